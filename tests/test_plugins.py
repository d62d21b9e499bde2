"""Third-party plugins found through entry points, as a pip-installed package would add them.

The plugin package is written into a temporary folder on sys.path: a module plus a
``.dist-info`` folder whose ``entry_points.txt`` names it, which is what pip leaves behind, so
`importlib.metadata` finds it the same way. Its classes inherit nothing from edge_sdk
(DESIGN.md: plugins satisfy the Protocols structurally).
"""

from __future__ import annotations

import copy
import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from edge_sdk import registry
from edge_sdk.classifier import Classifier
from edge_sdk.errors import ConfigError, SourceContractError
from edge_sdk.pipeline import Pipeline
from edge_sdk.sources import ManagedSource, open_source, route

PLUGIN = '''
import numpy as np

from edge_sdk.runtimes.litert import LiteRTRuntime
from edge_sdk.types import Frame


class CountingSource:
    """Grey frames whose value is their index; inherits nothing."""

    live = False
    opened = []

    def __init__(self, uri, *, count=3, size="64x48"):
        self.uri = uri
        self.count = int(count)
        self.size = tuple(int(v) for v in size.split("x"))
        self.next = 0
        self.closed = False
        CountingSource.opened.append(self)

    def read(self):
        if self.next >= self.count:
            return None
        width, height = self.size
        image = np.full((height, width, 3), self.next, np.uint8)
        self.next += 1
        return Frame(image=image, index=self.next - 1, timestamp_ns=0, source=self.uri)

    def close(self):
        self.closed = True


class BrokenLiveSource:
    """A live camera whose read() hands back a bare array instead of a Frame (a plugin bug)."""

    live = True
    opened = []

    def __init__(self, uri):
        self.uri = uri
        BrokenLiveSource.opened.append(self)

    def read(self):
        return np.zeros((48, 64, 3), np.uint8)

    def close(self):
        pass


class CountingRuntime:
    """A runtime that wraps LiteRT and counts its calls; inherits nothing."""

    model_format = "tflite"

    def __init__(self, model_path, *, num_threads=None):
        self._inner = LiteRTRuntime(model_path, num_threads=num_threads)
        self.input_spec = self._inner.input_spec
        self.output_spec = self._inner.output_spec
        self.calls = 0

    def run(self, tensor):
        self.calls += 1
        return self._inner.run(tensor)

    def close(self):
        self._inner.close()


class ListSink:
    """Keeps what it is given; inherits nothing."""

    made = []

    def __init__(self, *, tag="", every=1):
        self.tag = tag
        self.every = int(every)
        self.got = []
        self.closed = False
        ListSink.made.append(self)

    def publish(self, prediction, frame):
        if prediction.frame_index % self.every == 0:
            self.got.append(prediction.frame_index)

    def close(self):
        self.closed = True
'''


@pytest.fixture()
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """Install the plugin package into a folder on sys.path; returns its module."""
    (tmp_path / "edge_demo_plugin.py").write_text(PLUGIN)
    info = tmp_path / "edge_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: edge-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [edge_sdk.sources]
        counting = edge_demo_plugin:CountingSource
        broken = edge_demo_plugin:BrokenLiveSource

        [edge_sdk.runtimes]
        counting = edge_demo_plugin:CountingRuntime

        [edge_sdk.sinks]
        listing = edge_demo_plugin:ListSink
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("edge_demo_plugin")
    yield module
    sys.modules.pop("edge_demo_plugin", None)  # the next test installs it afresh


def test_a_plugin_source_opens_by_its_scheme_and_closes_with_with(plugin: ModuleType) -> None:
    assert "counting" in registry.names("sources")
    assert route("counting://anything") == "counting"
    with open_source("counting://anything", count=2) as source:
        assert isinstance(source, ManagedSource)  # it has no __enter__ of its own
        assert source.uri == "counting://anything"
        assert source.size == (64, 48)  # the plugin's own attributes show through
        assert (source.fps, source.live) == (0.0, False)  # it has no fps: the "unknown" value
        frames = [source.read(), source.read(), source.read()]
    assert [f.index if f else None for f in frames] == [0, 1, None]
    (inner,) = plugin.CountingSource.opened
    assert inner.closed and source.source is inner
    with pytest.raises(ConfigError, match="no option 'colour'; accepted: count, size"):
        open_source("counting://x", colour="red")


def test_a_wrapped_source_copies_without_endless_lookup(plugin: ModuleType) -> None:
    source = open_source("counting://x", count=1)
    twin = copy.copy(source)  # copy makes the object without calling __init__ first
    assert twin.read() is not None and twin.size == (64, 48)


def test_a_built_in_source_is_not_wrapped() -> None:
    with open_source("test://?size=32x24&count=1&live=0") as source:
        assert not isinstance(source, ManagedSource)
        assert source.read() is not None


def test_the_pipeline_runs_a_plugin_source_and_a_plugin_runtime(
    plugin: ModuleType, model_home: Path
) -> None:
    classifier = Classifier.from_model(
        "squeezenet1.1", runtime="counting", num_threads=1, home=model_home
    )
    with classifier, Pipeline("counting://five?", classifier, keep_all=True) as pipeline:
        got = list(pipeline)
    assert [p.frame_index for p in got] == [0, 1, 2]
    assert classifier.runtime.calls == 3  # type: ignore[attr-defined]
    opened = plugin.CountingSource.opened
    (source,) = opened
    assert source.closed
    reference = Classifier.from_model("squeezenet1.1", runtime="litert", num_threads=1, home=model_home)
    with reference:
        first = reference.classify(np.zeros((48, 64, 3), np.uint8))
    assert got[0].top[0].index == first.top[0].index


def test_a_live_plugin_source_that_breaks_its_contract_is_not_reopened(
    plugin: ModuleType, model_home: Path
) -> None:
    # Reopening gives the same code the same frames: the run ends at once with the bug named
    # instead of reconnecting with backoff for as long as the service runs.
    classifier = Classifier.from_model("squeezenet1.1", runtime="litert", num_threads=1, home=model_home)
    with classifier, pytest.raises(SourceContractError, match=r"BrokenLiveSource.read\(\) returned a "
                                                              r"ndarray; read\(\) must return"):
        Pipeline("broken://cam", classifier, max_frames=5).run()
    assert len(plugin.BrokenLiveSource.opened) == 1


def test_a_service_config_takes_a_plugin_runtime(plugin: ModuleType) -> None:
    from edge_sdk import config

    assert config.parse({"model": {"runtime": "counting"}}).model.runtime == "counting"
    with pytest.raises(ConfigError, match="choose one of: 'counting', 'litert', 'onnxruntime', 'opencv'"):
        config.parse({"model": {"runtime": "tflite"}})


def test_a_service_config_makes_plugin_sinks_from_their_tables(
    plugin: ModuleType, model_home: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from edge_sdk import config
    from edge_sdk.cli.main import cli
    from edge_sdk.service.runner import build_sinks, close_all

    parsed = config.parse({"sinks": {"listing": {"tag": "shelf", "every": 2}}})
    assert parsed.sinks == {"listing": {"tag": "shelf", "every": 2}}
    (sink,) = build_sinks(parsed)
    assert isinstance(sink, plugin.ListSink) and (sink.tag, sink.every) == ("shelf", 2)
    classifier = Classifier.from_model("squeezenet1.1", num_threads=1, home=model_home)
    with classifier, Pipeline("counting://three", classifier, sinks=[sink], keep_all=True) as p:
        assert len(list(p)) == 3
    close_all([sink])
    assert sink.got == [0, 2] and sink.closed

    toml = tmp_path / "config.toml"
    toml.write_text('[sinks.listing]\ntag = "shelf"\n')
    result = CliRunner().invoke(cli, ["check-config", str(toml)])
    assert result.exit_code == 0, result.output
    assert "sink:    listing (tag)" in result.output


@pytest.mark.parametrize(
    ("sinks", "message"),
    [
        ({"listing": {"colour": "red"}}, r"config: \[sinks.listing\] has no option 'colour'; accepted: tag"),
        ({"nosuch": {}}, r"\[sinks.nosuch\]: no sink named 'nosuch' is .*\(available: listing, video\)"),
        ({"mqtt": {"host": "x"}}, r"\[sinks.mqtt\]: mqtt is a built-in table; configure it in \[mqtt\]"),
        ({"listing": {"token": "x"}}, r"\[sinks.listing\] token: secrets do not belong in the config"),
        ({"listing": "on"}, r"write \[sinks.NAME\] with that sink's options under it"),
    ],
)
def test_a_bad_plugin_sink_table_is_one_config_error(
    plugin: ModuleType, sinks: dict[str, object], message: str
) -> None:
    from edge_sdk import config

    with pytest.raises(ConfigError, match=message):
        config.parse({"sinks": sinks})


def test_a_plugin_sink_that_fails_to_start_is_one_line(plugin: ModuleType) -> None:
    from edge_sdk import config
    from edge_sdk.errors import SinkError
    from edge_sdk.service.runner import build_sinks

    # int(["x"]) is a TypeError inside the plugin: not ours, still one line.
    parsed = config.parse({"sinks": {"listing": {"every": ["x"]}}}, where="edge.toml")
    with pytest.raises(SinkError, match=r"^the sink 'listing' failed to start \(TypeError: int\(\) "
                       r".*\); check \[sinks.listing\] in edge.toml$"):
        build_sinks(parsed)
    # A ValueError is taken as the plugin refusing a value, as for the built-in sinks.
    parsed = config.parse({"sinks": {"listing": {"every": "often"}}}, where="edge.toml")
    with pytest.raises(ConfigError, match=r"^edge.toml: \[sinks.listing\] invalid literal .*; fix"):
        build_sinks(parsed)


def test_the_built_in_video_sink_has_a_sinks_table() -> None:
    from edge_sdk import config

    assert config.parse({"sinks": {"video": {"path": "out.mp4"}}}).sinks == {"video": {"path": "out.mp4"}}
    with pytest.raises(ConfigError, match=r"has no option 'file'; accepted: path, fps, codec"):
        config.parse({"sinks": {"video": {"file": "out.mp4"}}})
