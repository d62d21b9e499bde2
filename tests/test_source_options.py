"""Source options (a camera's size, RTSP's transport, ...) from each way in: the Python API,
the one-shot CLI, the service config and `run`'s command line; refused ones say what to fix."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from edge_sdk import config as cfg
from edge_sdk.capture import Backoff
from edge_sdk.classifier import Classifier
from edge_sdk.cli.main import cli
from edge_sdk.cli.run import SourceOption
from edge_sdk.errors import ConfigError, SourceError
from edge_sdk.pipeline import Pipeline
from edge_sdk.sources import check_options, open_source


@pytest.fixture
def runner(model_home: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("EDGE_SDK_HOME", str(model_home))
    return CliRunner()


def config_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        cfg.load(path)
    return str(info.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("size=1280x720", ("size", "1280x720")),
    ("fps=30", ("fps", 30)),
    ("timeout=2.5", ("timeout", 2.5)),
    ("verify=false", ("verify", False)),
    ("transport = udp", ("transport", "udp")),
    ('fourcc=""', ("fourcc", "")),
    ("fourcc=", ("fourcc", "")),
    ("name=[1, 2]", ("name", "[1, 2]")),  # one plain value: a TOML array stays text
    ("when=1979-05-27", ("when", "1979-05-27")),
])
def test_command_line_values_are_read_as_toml_scalars_or_text(text: str, expected: tuple[str, Any]) -> None:
    assert SourceOption().convert(text, None, None) == expected


def test_open_source_refuses_a_wrong_option_type_with_a_type_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"the source 'test' option fps must be a finite number, not 'x'"):
        open_source("test://", fps="x")
    with pytest.raises(TypeError, match="option fps must be a finite number, not nan"):
        open_source("test://", fps=float("nan"))
    with pytest.raises(TypeError, match="option live must be true or false, not 1"):
        open_source("test://", live=1)
    # numpy scalars are numbers, None is what an Optional option's default is.
    with open_source("test://", fps=np.float32(20), count=np.int64(2), size=None) as source:
        assert source.fps == 20 and source.size == (640, 480)
    with pytest.raises(ConfigError, match=r"has no option 'transport'; accepted: size, fps, count, live"):
        open_source("test://", transport="udp")


def test_check_options_names_the_source_and_what_it_takes() -> None:
    check_options("rtsp://cam.local/stream", {"transport": "udp", "timeout": 10})
    with pytest.raises(ConfigError, match=r"^the rtsp source takes no option 'size'; it takes: "
                                          r"timeout, transport$"):
        check_options("rtsp://cam.local/stream", {"size": "640x480"})
    with pytest.raises(ConfigError, match="reduce is chosen by the pipeline"):
        check_options("0", {"reduce": 2})
    with pytest.raises(ConfigError, match=r"^verify = 'no' must be true or false for the https source$"):
        check_options("https://cam.local/video", {"verify": "no"})


def test_config_source_options(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[source]\nuri = "rtsp://cam.local/stream"\n'
                    'options = { transport = "udp", timeout = 10 }\n')
    config = cfg.load(path)
    assert config.source.options == {"transport": "udp", "timeout": 10}
    assert hash(config) == hash(config)  # a Config stays usable as a key
    assert cfg.Config().source.options == {}
    assert cfg.Config().source.options is not cfg.Config().source.options

    path.write_text('[source]\nuri = "http://cam.local/video"\n[source.options]\nverify = false\n')
    assert cfg.load(path).source.options == {"verify": False}


@pytest.mark.parametrize(("text", "expected"), [
    ('[source]\nuri = "0"\noptions = 3', r"[source] options = 3 must be a table, e.g. {key = value}"),
    ('[source]\nuri = "0"\noptions = { transport = "udp" }',
     "[source] options: the v4l2 source takes no option 'transport'; it takes: size, fps, fourcc"),
    ('[source]\nuri = "test://"\noptions = { fps = "30" }',
     "[source] options: fps = '30' must be a finite number for the test source"),
    ('[source]\nuri = "clip.mp4"\noptions = { reduce = 2 }', "[source] options: reduce is chosen by"),
])
def test_config_refuses_bad_source_options(tmp_path: Path, text: str, expected: str) -> None:
    message = config_error(tmp_path, text)
    assert expected in message and "\n" not in message


def test_one_shot_cli_passes_source_options(runner: CliRunner) -> None:
    # count and live reach the synthetic source: 5 frames, read as a file would be.
    result = runner.invoke(cli, ["--source", "test://?fps=30", "--source-option", "count=5",
                                 "--source-option", "live=false", "--source-option", "size=160x120",
                                 "--every-frame", "--no-display", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [p["frame"] for p in lines] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(("option", "expected"), [
    ("transport=udp", "Error: --source-option: the test source takes no option 'transport'; it "
                      "takes: size, fps, count, live"),
    ("fps=fast", "Error: --source-option: fps = 'fast' must be a finite number for the test source"),
    ("reduce=2", "Error: --source-option: reduce is chosen by the pipeline"),
    ("=3", "is not KEY=VALUE"),
])
def test_one_shot_cli_refuses_bad_source_options_in_one_line(
    runner: CliRunner, option: str, expected: str
) -> None:
    result = runner.invoke(cli, ["--source", "test://", "--source-option", option, "--no-display"])
    assert result.exit_code != 0
    assert expected in result.output
    assert "Traceback" not in result.output


def test_service_run_reads_options_and_the_command_line_merges_into_them(
    runner: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    path = tmp_path / "config.toml"
    path.write_text(f'[source]\nuri = "test://?fps=30"\noptions = {{ count = 3, live = false }}\n'
                    f'[pipeline]\nkeep_all = true\n[jsonl]\nenabled = true\npath = "{out}"\n')
    check = runner.invoke(cli, ["check-config", str(path)])
    assert "source:  test://?fps=30 (count=3 live=false)" in check.output
    result = runner.invoke(cli, ["run", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 3
    out.unlink()
    result = runner.invoke(cli, ["run", "--config", str(path), "--source-option", "count=4"])
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 4  # live = false still comes from the file
    bad = runner.invoke(cli, ["run", "--config", str(path), "--source-option", "fourcc=MJPG"])
    assert bad.exit_code == 78
    assert "command line: [source] options: the test source takes no option 'fourcc'" in bad.output


def test_pipeline_reopens_the_source_with_its_options(classifier: Classifier) -> None:
    # A live synthetic source of 3 frames ends, the pipeline reconnects: the reopened source
    # must get the same options (its size shows it).
    pipeline = Pipeline("test://?fps=60", classifier, source_options={"size": "96x64", "count": 3},
                        max_frames=5, reconnect=Backoff(initial=0.05, maximum=0.05))
    pipeline.run()
    assert pipeline.error is None
    assert pipeline.metrics.snapshot()["reconnects"] >= 1
    assert pipeline.size == (96, 64)


def test_pipeline_refuses_source_options_it_cannot_use(classifier: Classifier) -> None:
    with pytest.raises(TypeError, match="source_options must be a dict"):
        Pipeline("test://", classifier, source_options=[("fps", 5)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"give reduce to the Pipeline itself"):
        Pipeline("test://", classifier, source_options={"reduce": 2})
    with open_source("test://") as opened, pytest.raises(ValueError, match="source given as a URI"):
        Pipeline(opened, classifier, source_options={"fps": 5})
    with pytest.raises(ConfigError, match="has no option 'transport'"):
        Pipeline("test://", classifier, source_options={"transport": "udp"}).start()


@pytest.mark.parametrize(("uri", "options", "expected"), [
    ("{tmp}", {"fps": -1}, "fps must be within [0, 1000], got -1.0"),
    ("{tmp}", {"fps": 1e308}, "fps must be within [0, 1000], got 1e+308"),
    ("{tmp}", {"watch": True, "loop": True}, "watch and loop exclude each other"),
    ("test://", {"fps": 0}, "fps"),
    ("0", {"size": "big"}, "bad camera size 'big'"),
    ("0", {"size": "99999x99999"}, "camera size 99999x99999 is larger than any camera gives"),
    ("0", {"fps": 0}, "fps must be within (0, 1000], got 0.0 (or leave it out for the camera's "
                      "own rate)"),
    ("0", {"fps": 10**400}, "fps must be within (0, 1000], got a number of 401 digits"),
    ("0", {"fps": 1e308}, "fps must be within (0, 1000], got 1e+308"),
    ("0", {"fourcc": "MJPEG"}, "fourcc must be 4 characters"),
    ("0", {"fourcc": "mjpg"}, "fourcc codes are case-sensitive: use 'MJPG', not 'mjpg'"),
    ("csi://0", {"size": "20000x10"}, "camera size 20000x10 is larger than any camera gives"),
    ("csi://0", {"fps": -5}, "fps must be within (0, 1000], got -5.0"),
    ("csi://0", {"flip": 8}, "flip must be a flip-method from 0 to 7"),
    ("rtsp://cam.local/s", {"transport": "quic"}, "transport must be one of tcp, udp, not 'quic'"),
    ("rtsp://cam.local/s", {"timeout": 0.05}, "timeout must be within [0.1, 3600], got 0.05"),
    ("rtsp://cam.local/s", {"timeout": 1e12}, "timeout must be within [0.1, 3600]"),
    ("http://cam.local/v", {"timeout": 7200}, "timeout"),
])
def test_option_values_opening_would_refuse_are_refused_by_the_check(
    tmp_path: Path, uri: str, options: dict[str, Any], expected: str
) -> None:
    uri = uri.replace("{tmp}", str(tmp_path))  # a folder of images
    with pytest.raises(ConfigError, match=re.escape(expected)):
        check_options(uri, options)
    text = "[source]\nuri = " + json.dumps(uri) + "\noptions = " + toml_table(options) + "\n"
    message = config_error(tmp_path, text)
    assert "[source] options:" in message and expected in message


def test_camera_values_in_range_pass_and_lower_case_fourccs_that_exist_too() -> None:
    check_options("0", {"size": "16384x16384", "fps": 1000, "fourcc": "YUYV"})
    check_options("0", {"fourcc": "pRAA"})  # a packed Bayer format: its code is lower case
    check_options("0", {"fourcc": ""})  # the driver's own format
    check_options("csi://0", {"size": "4056x3040", "fps": 0.5, "flip": 7})


def toml_table(options: dict[str, Any]) -> str:
    return "{ " + ", ".join(f"{k} = {cfg.as_toml_value(v)}" for k, v in options.items()) + " }"


def test_watch_on_a_single_file_is_refused_and_a_missing_folder_still_has_its_options_checked(
    tmp_path: Path
) -> None:
    photo = tmp_path / "one.jpg"
    photo.write_bytes(b"x")
    with pytest.raises(ConfigError, match="watch needs a folder or a glob of images, not the file"):
        check_options(str(photo), {"watch": True})
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    with pytest.raises(ConfigError, match="watch needs a folder or a glob of images, not the file"):
        check_options(str(clip), {"watch": True})
    later = str(tmp_path / "mounted-later")
    check_options(later, {"watch": True})  # a disk mounted after the check: passes
    with pytest.raises(ConfigError, match="watch = 'yes' must be true or false for the image source"):
        check_options(later, {"watch": "yes"})
    with pytest.raises(ConfigError, match="the image source takes no option 'size'"):
        check_options(later, {"watch": True, "size": "1x1"})
    with pytest.raises(SourceError, match=r"no such folder: .*mounted-later; create it"):
        open_source(later, watch=True)
    with pytest.raises(SourceError, match="no such file or folder"):
        open_source(later, watch=False)  # not "the file source takes no option 'watch'"


def test_the_service_exits_78_on_a_source_option_refused_only_at_open(tmp_path: Path) -> None:
    """A config built without its checks (what check-config cannot see: a folder that became
    a file after the check) fails at the open with a ConfigError, which `run` exits 78 on."""
    from edge_sdk.service.notify import SystemdNotifier
    from edge_sdk.service.runner import run_service

    photo = tmp_path / "now-a-file"
    photo.write_bytes(b"x")
    unchecked = cfg.Config(source=cfg.SourceConfig(uri=str(photo), options={"watch": True}))
    with pytest.raises(ConfigError, match="watch needs a folder or a glob of images"):
        run_service(unchecked, notifier=SystemdNotifier(""))
    negative = cfg.Config(source=cfg.SourceConfig(uri=str(tmp_path), options={"fps": -1}))
    refused = r"\[source\] options fps must be within \[0, 1000\], got -1.0; fix "
    with pytest.raises(ConfigError, match=refused):
        run_service(negative, notifier=SystemdNotifier(""))


def test_run_source_leaves_out_file_options_the_new_source_does_not_take(
    runner: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    path = tmp_path / "config.toml"
    path.write_text('[source]\nuri = "0"\noptions = { size = "160x120", fourcc = "YUYV" }\n'
                    f'[pipeline]\nkeep_all = true\n[jsonl]\nenabled = true\npath = "{out}"\n')
    result = runner.invoke(cli, ["run", "--config", str(path), "--source", "test://?fps=30",
                                 "--source-option", "count=2", "--source-option", "live=false"])
    assert result.exit_code == 0, result.output
    assert "left out the config's [source] options fourcc, which that source does not take" in result.output
    assert len(out.read_text().splitlines()) == 2


def test_run_source_option_watch_or_loop_leaves_out_the_files_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge_sdk.cli.service import apply_overrides

    for in_file, given in (("loop", "watch"), ("watch", "loop")):
        config = cfg.Config(source=cfg.SourceConfig(uri=str(tmp_path),
                                                    options={in_file: True, "fps": 5}))
        merged = apply_overrides(config, source_options={given: True})
        assert merged.source.options == {"fps": 5, given: True}
        assert (f"--source-option {given}=true: left out the config's {in_file} = true, which "
                f"{given} excludes") in capsys.readouterr().err
    # Both on the command line: refused as in the file.
    config = cfg.Config(source=cfg.SourceConfig(uri=str(tmp_path), options={"loop": True}))
    with pytest.raises(ConfigError, match="watch and loop exclude each other"):
        apply_overrides(config, source_options={"watch": True, "loop": True})
    assert apply_overrides(config, source_options={"watch": False}).source.options == {
        "loop": True, "watch": False}
    with pytest.raises(ConfigError, match="watch = 1 must be true or false"):
        apply_overrides(config, source_options={"watch": 1})
    assert "left out" not in capsys.readouterr().err  # no warning about a value then refused


def test_check_config_notes_that_a_watched_folder_without_keep_all_thins_bursts(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[source]\nuri = "{tmp_path}"\noptions = {{ watch = true }}\n')
    result = runner.invoke(cli, ["check-config", str(path)])
    assert result.exit_code == 0, result.output
    assert "note:    a burst of images in the watched folder is thinned to the newest" in result.output
    path.write_text(path.read_text() + "[pipeline]\nkeep_all = true\n")
    assert "note:" not in runner.invoke(cli, ["check-config", str(path)]).output


def test_an_rtsp_camera_that_speaks_only_udp_is_reached_with_the_option(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end through the CLI and a real RTSP server that refuses TCP: the default (TCP)
    cannot open it, --source-option transport=udp can, and each reconnect would too."""
    from support.rtsp_server import RtspServer
    from support.rtsp_server import missing as rtsp_server_missing

    from edge_sdk.sources.rtsp import OPTIONS_VAR

    reason = rtsp_server_missing()
    if reason is not None:
        pytest.skip(reason)
    monkeypatch.delenv(OPTIONS_VAR, raising=False)
    with RtspServer(protocols="udp", codec="mjpeg") as udp_only:
        base = ["--source", udp_only.url, "--no-display", "--json", "--max-frames", "3"]
        refused = runner.invoke(cli, [*base, "--source-option", "timeout=3"])
        assert refused.exit_code == 1 and "Error: cannot open rtsp://127.0.0.1" in refused.output
        result = runner.invoke(cli, [*base, "--source-option", "transport=udp"])
    assert result.exit_code == 0, result.output
    assert len([line for line in result.stdout.splitlines() if line.startswith("{")]) == 3


def test_an_https_camera_with_a_self_signed_certificate_needs_verify_false(
    runner: CliRunner, tmp_path: Path
) -> None:
    """A real HTTPS MJPEG camera whose certificate no CA on this machine signed."""
    from support.mjpeg_server import MjpegServer
    from support.mosquitto import make_tls

    cert = make_tls(tmp_path / "tls")
    with MjpegServer(size=(160, 120), fps=30, tls=(cert.cert_file, cert.key_file)) as camera:
        assert camera.url.startswith("https://127.0.0.1:")
        with pytest.raises(SourceError, match=r"TLS with .* failed .*; for a self-signed camera "
                                              r"use verify=False"):
            open_source(camera.url, timeout=3.0)
        with open_source(camera.url, verify=False, timeout=3.0) as source:
            frame = source.read()
            assert frame is not None and frame.image.shape == (120, 160, 3)
        base = ["--source", camera.url, "--no-display", "--json", "--max-frames", "3"]
        refused = runner.invoke(cli, base)
        assert refused.exit_code == 1 and "for a self-signed camera use verify=False" in refused.output
        result = runner.invoke(cli, [*base, "--source-option", "verify=false"])
    assert result.exit_code == 0, result.output
    assert len([line for line in result.stdout.splitlines() if line.startswith("{")]) == 3


def test_run_source_a_file_leaves_out_the_configs_watch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge_sdk.cli.service import apply_overrides

    path = tmp_path / "config.toml"
    path.write_text(f'[source]\nuri = "{tmp_path}"\noptions = {{ watch = true }}\n')
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    config = apply_overrides(cfg.load(path), source=str(clip))
    assert config.source.uri == str(clip) and config.source.options == {}
    assert "left out the config's [source] options watch" in capsys.readouterr().err
