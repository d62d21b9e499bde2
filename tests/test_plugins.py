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
from edge_sdk.errors import ConfigError
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

        [edge_sdk.runtimes]
        counting = edge_demo_plugin:CountingRuntime
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


def test_a_service_config_takes_a_plugin_runtime(plugin: ModuleType) -> None:
    from edge_sdk import config

    assert config.parse({"model": {"runtime": "counting"}}).model.runtime == "counting"
    with pytest.raises(ConfigError, match="choose one of: 'counting', 'litert', 'onnxruntime', 'opencv'"):
        config.parse({"model": {"runtime": "tflite"}})
