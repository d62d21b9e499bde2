"""`edge-classify --source/--camera`: the live run from the command line, on real videos."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner
from support.media import make_video

from edge_sdk.cli import run as run_module
from edge_sdk.cli.main import cli

EXE = Path(sys.executable).with_name("edge-classify")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("cli") / "clip.avi", size=(640, 360), frames=30,
                      photos=10)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten seconds at 30 fps: a run that is still going when the test signals it."""
    return make_video(tmp_path_factory.mktemp("cli") / "long.avi", size=(320, 240), frames=300,
                      photos=10)


@pytest.fixture()
def runner(model_home: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("EDGE_SDK_HOME", str(model_home))
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    return CliRunner()


def test_json_lines_for_every_frame(runner: CliRunner, clip: Path) -> None:
    result = runner.invoke(cli, ["--source", str(clip), "--no-display", "--json", "--every-frame",
                                 "--threads", "1", "--top-k", "2"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["frame"] for r in records] == list(range(30))
    assert all(len(r["top"]) == 2 and r["model"] == "squeezenet1.1" for r in records)
    # The summary table goes to stderr, so stdout stays pure JSON lines.
    assert "inference" in result.stderr and "frames in 30" in result.stderr


def test_threshold_and_smoothing_options(runner: CliRunner, clip: Path) -> None:
    """--threshold leaves out classes below it (an empty top is allowed); --smooth N runs."""
    result = runner.invoke(cli, ["--source", str(clip), "--no-display", "--json", "--every-frame",
                                 "--threads", "1", "--top-k", "5", "--threshold", "0.2",
                                 "--smooth", "3"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 30
    scores = [t["score"] for r in records for t in r["top"]]
    assert scores and min(scores) >= 0.2
    assert any(len(r["top"]) < 5 for r in records)  # five classes at >= 20% cannot all fit
    bad = runner.invoke(cli, ["--source", str(clip), "--threshold", "1.5"])
    assert bad.exit_code == 2 and "threshold" in bad.output.lower()


def test_record_and_json_file_headless(runner: CliRunner, clip: Path, tmp_path: Path) -> None:
    video, lines = tmp_path / "annotated.avi", tmp_path / "out.jsonl"
    result = runner.invoke(cli, ["--source", str(clip), "--json", str(lines), "--record",
                                 str(video), "--every-frame", "--max-frames", "12", "--smooth", "3"])
    assert result.exit_code == 0, result.output
    assert "overlay window off" in result.stderr  # --display is the default; no display here
    assert len(lines.read_text().splitlines()) == 12
    cap = cv2.VideoCapture(str(video))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, image = cap.read()
    cap.release()
    assert ok and image.shape == (360, 640, 3) and count == 12


def test_stats_lines(runner: CliRunner, clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_module, "STATS_INTERVAL_S", 0.2)
    result = runner.invoke(cli, ["--source", str(clip), "--no-display", "--realtime", "--stats"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "fps  out" in line]
    assert len(lines) >= 2
    # An MJPEG file played like a camera is decoded on the inference thread: its own stage.
    assert all(" decode " in line and " inference " in line for line in lines[1:]), lines
    rows = {line.split()[0]: line.split()[1:] for line in result.stderr.splitlines() if line}
    assert {"capture_wait", "decode", "inference", "age"} <= set(rows)
    assert int(rows["decode"][-1]) == int(rows["inference"][-1]) > 0  # one decode per prediction


def test_errors_are_one_line(runner: CliRunner, tmp_path: Path, clip: Path) -> None:
    missing = runner.invoke(cli, ["--source", str(tmp_path / "nope.mp4"), "--no-display"])
    assert missing.exit_code == 1
    assert missing.stderr.strip().splitlines()[-1].startswith("Error: no such video file")
    assert "Traceback" not in missing.output
    bad_model = runner.invoke(cli, ["--source", str(clip), "--model", "resnet9000"])
    assert bad_model.exit_code == 1 and "Traceback" not in bad_model.output
    both = runner.invoke(cli, ["--source", str(clip), "--camera", "0"])
    assert both.exit_code == 2 and "one of them" in both.stderr
    assert runner.invoke(cli, []).output.startswith("Usage")
    assert "squeezenet1.1" in runner.invoke(cli, ["models", "list"]).output


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_sink_that_keeps_failing_fails_the_run(runner: CliRunner, clip: Path) -> None:
    result = runner.invoke(cli, ["--source", str(clip), "--no-display", "--every-frame",
                                 "--json", "/dev/full"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: sink jsonl failed 30 times (last: cannot write JSON lines to "
                           "/dev/full: No space left on device"), last


def test_ctrl_c_while_a_stream_is_still_connecting(model_home: Path) -> None:
    # A camera that accepts the connection and never answers: Ctrl-C must not wait out the
    # connect timeout, and stopping on purpose is no error.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        uri = f"http://127.0.0.1:{server.getsockname()[1]}/stream"
        env = {**os.environ, "EDGE_SDK_HOME": str(model_home)}
        env.pop("DISPLAY", None)
        proc = subprocess.Popen([str(EXE), "--source", uri, "--no-display"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            server.settimeout(20)
            connection, _ = server.accept()  # it is connecting now
            proc.send_signal(signal.SIGINT)
            sent = time.monotonic()
            proc.wait(timeout=10)
            took = time.monotonic() - sent
            connection.close()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 0 and "Error" not in stderr and "Traceback" not in stderr, stderr
    assert took < 2.0, f"took {took:.2f} s to stop"


@pytest.mark.skipif(os.path.exists("/dev/video0"), reason="this machine has a camera")
def test_no_camera(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--camera", "--no-display"])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert lines == ["Error: no camera at /dev/video0; try --source FILE"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly(model_home: Path, long_clip: Path, sig: signal.Signals) -> None:
    env = {**os.environ, "EDGE_SDK_HOME": str(model_home)}
    env.pop("DISPLAY", None)
    proc = subprocess.Popen(
        [str(EXE), "--source", str(long_clip), "--no-display", "--json", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # blocks until the first prediction is out
        assert json.loads(first)["v"] == 1
        proc.send_signal(sig)
        sent = time.monotonic()
        proc.wait(timeout=10)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 0, stderr
    assert took < 2.0, f"took {took:.2f} s to stop"
    assert "Traceback" not in stderr and "age" in stderr  # the summary table was printed
    assert (proc.stdout.read() if proc.stdout else "").count("\n") < 299  # it did stop early


def test_web_option_creates_the_web_sink(runner: CliRunner, clip: Path) -> None:
    result = runner.invoke(cli, ["--source", str(clip), "--no-display", "--every-frame",
                                 "--max-frames", "3", "--web", "127.0.0.1:0"])
    assert result.exit_code == 0, result.output
    assert "sink web: published 3" in result.stderr
    refused = runner.invoke(cli, ["--source", str(clip), "--no-display", "--web", "0.0.0.0:0"])
    assert refused.exit_code == 1 and "Traceback" not in refused.output  # no token: one line


@pytest.mark.parametrize("module", ["edge_sdk", "edge_sdk.cli.main"])
def test_the_command_runs_as_a_python_module(module: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "Usage: edge-classify" in result.stdout
