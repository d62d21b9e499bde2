"""The built-in sinks, their worker queues and the metrics they report to."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from support.media import make_video
from support.privileges import only_for_root_with_setpriv, rerun_without_root_override

from edge_sdk import registry
from edge_sdk.classifier import Classifier
from edge_sdk.errors import SinkError
from edge_sdk.metrics import BUCKETS_MS, Metrics, RateMeter, prometheus_buckets
from edge_sdk.pipeline import Pipeline
from edge_sdk.sinks.annotate import annotate
from edge_sdk.sinks.jsonl import JsonlSink
from edge_sdk.sinks.overlay import OverlaySink, display_problem
from edge_sdk.sinks.video import VideoSink
from edge_sdk.sinks.worker import BoundedQueue, QueueClosed, SinkFailure, SinkWorker
from edge_sdk.types import Frame, Label, Prediction, Timings
from edge_sdk.web.sink import WebSink


def prediction(index: int = 0) -> Prediction:
    return Prediction(
        frame_index=index,
        timestamp_ns=1_000 + index,
        top=(Label(281, "tabby", 0.8), Label(285, "Egyptian cat", 0.15)),
        timings=Timings(capture_wait=1.0, preprocess=1.5, inference=7.25, postprocess=0.5, age=12.0),
        model="squeezenet1.1",
    )


def photo_frame(index: int = 0, size: tuple[int, int] = (320, 240)) -> Frame:
    rng = np.random.default_rng(index)
    image = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Frame(image, index, 1_000 + index, "test")


# -- annotate ------------------------------------------------------------------------------------


def test_the_status_line_names_the_file_of_an_image_from_a_folder() -> None:
    from edge_sdk.sinks.annotate import status_line

    assert status_line(prediction(), fps=2.0).endswith("|  #0")
    named = dataclasses.replace(prediction(), file="/srv/inbox/cam1-0815.jpg")
    assert status_line(named).endswith("|  cam1-0815.jpg")


def test_annotate_draws_on_a_copy() -> None:
    frame = photo_frame()
    before = frame.image.copy()
    out = annotate(frame.image, prediction(), fps=12.5)
    assert out.shape == frame.image.shape and out.dtype == np.uint8
    assert np.array_equal(frame.image, before)  # the shared frame is untouched
    assert not np.array_equal(out, before)
    tiny = annotate(np.zeros((24, 32, 3), np.uint8), Prediction(0, 0, ()))  # nothing to list
    assert tiny.shape == (24, 32, 3)
    with pytest.raises(ValueError, match="H x W x 3"):
        annotate(np.zeros((10, 10), np.uint8), prediction())


# -- jsonl ---------------------------------------------------------------------------------------


def test_jsonl_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    with JsonlSink(path=path) as sink:
        for i in range(3):
            sink.publish(prediction(i), None)
    with JsonlSink(path=path, append=True) as sink:
        sink.publish(prediction(3), None)
    lines = path.read_text().splitlines()
    assert [Prediction.from_dict(json.loads(line)).frame_index for line in lines] == [0, 1, 2, 3]
    first = json.loads(lines[0])
    assert first["v"] == 1 and first["top"][0]["label"] == "tabby"
    assert first["timings_ms"]["inference"] == 7.25
    # A newer sender may add keys without bumping "v": a reader of this version ignores them.
    newer = {**first, "camera": "porch", "timings_ms": {**first["timings_ms"], "decode": 1.5}}
    assert Prediction.from_dict(newer) == Prediction.from_dict(first)


def test_a_pipelines_predictions_carry_their_capture_time_in_utc(
    tmp_path: Path, classifier: Any
) -> None:
    path = tmp_path / "out.jsonl"
    before = time.time()
    with Pipeline("test://?size=160x120&count=3&live=0", classifier, [JsonlSink(path=path)],
                  keep_all=True) as pipeline:
        pipeline.wait(30)
    after = time.time()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 3
    for line in lines:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"]), line["time"]
        moment = Prediction.from_dict(line).wall_time_ms / 1000
        assert before - 0.5 <= moment <= after  # captured within the run (ms resolution)
    assert "time" not in prediction(0).to_dict()  # not known outside a pipeline: left out
    known = dataclasses.replace(prediction(0), wall_time_ms=1796180724123)
    assert known.to_dict()["time"] == "2026-12-02T03:05:24.123Z"
    assert Prediction.from_dict(known.to_dict()) == known


def test_reopen_writes_on_to_a_new_file_and_keeps_every_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    path = folder / "p.jsonl"
    with JsonlSink(path=path) as sink:
        sink.publish(prediction(0), None)
        rotated = path.rename(folder / "p.jsonl.1")  # logrotate's move, then its SIGHUP
        sink.reopen()
        sink.publish(prediction(1), None)
        # The folder gone: the reopen fails, and the line goes to the file still open.
        path.rename(folder / "p.jsonl.2")
        rotated.unlink()
        moved = folder.rename(tmp_path / "elsewhere")
        sink.reopen()
        sink.publish(prediction(2), None)
    assert "cannot reopen" in caplog.text
    lines = (moved / "p.jsonl.2").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == [1, 2]


def test_a_score_or_timing_that_is_not_finite_is_written_as_null(tmp_path: Path) -> None:
    # NaN and Infinity are not JSON: a strict reader (a browser's JSON.parse) would refuse the line.
    odd = Prediction(0, 1, (Label(1, "tabby", float("nan")),), Timings(inference=float("inf")))
    path = tmp_path / "odd.jsonl"
    with JsonlSink(path=path) as sink:
        sink.publish(odd, None)
    line = path.read_text()
    data = json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in {line}"))
    assert data["top"][0]["score"] is None and data["timings_ms"]["inference"] is None
    back = Prediction.from_dict(data)
    assert math.isnan(back.top[0].score) and math.isnan(back.timings.inference)


def test_jsonl_stdout_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sink = registry.create("sinks", "jsonl")  # no path: stdout
    sink.publish(prediction(7), None)
    sink.close()
    assert json.loads(capsys.readouterr().out)["frame"] == 7
    with pytest.raises(SinkError, match="cannot write JSON lines"):
        JsonlSink(path=tmp_path / "no" / "such" / "dir.jsonl")


def test_jsonl_stops_the_pipeline_when_the_reader_goes_away() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    stopped = threading.Event()

    class FakePipeline:  # only request_stop is used
        def request_stop(self) -> None:
            stopped.set()

    stream = open(write_fd, "w")  # noqa: SIM115
    sink = JsonlSink(stream=stream)
    sink.attach(FakePipeline())
    sink.publish(prediction(), None)  # EPIPE: no crash, a stop request
    sink.publish(prediction(1), None)  # and nothing more is attempted
    sink.close()
    assert stopped.is_set() and sink.lines == 0
    with contextlib.suppress(BrokenPipeError):
        stream.close()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_jsonl_write_failure_is_a_sink_error_and_the_run_reports_it(
    classifier: Classifier, photos: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk: one line per failure kind (no traceback), the run goes on, and
    `Pipeline.sink_failures` tells the caller (the CLI exits non-zero on it)."""
    sink = JsonlSink(path="/dev/full")
    with pytest.raises(SinkError, match="cannot write JSON lines to /dev/full: No space left on device; "
                                        "free space"):
        sink.publish(prediction(), None)
    sink.close()  # nothing left over in a buffer to fail again
    good = JsonlSink(path=os.devnull)
    pipeline = Pipeline(str(photos), classifier, [JsonlSink(path="/dev/full"), good])
    with caplog.at_level(logging.WARNING):
        snapshot = pipeline.run()
    assert snapshot["frames_out"] == 4 and good.lines == 4
    assert snapshot["sinks"]["jsonl"]["errors"] == 4
    failure = pipeline.sink_failures["jsonl"]
    assert failure.failures == 4 and "No space left on device" in failure.last_error
    assert list(pipeline.sink_failures) == ["jsonl"]
    summary = pipeline.failure_summary()
    assert summary is not None and summary.startswith("sink jsonl failed 4 times (last: cannot write")
    failed = [r for r in caplog.records if "sink jsonl failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelno == logging.ERROR  # repeats held back
    assert not [r for r in caplog.records if r.exc_info]


def test_closed_sinks_refuse_to_publish(tmp_path: Path) -> None:
    """A sink a pipeline closed must not pretend to take predictions (a second run of it)."""
    sinks: list[Any] = [JsonlSink(path=tmp_path / "out.jsonl"), VideoSink(path=tmp_path / "out.avi"),
                        OverlaySink(enabled=False), WebSink(bind="127.0.0.1:0")]
    for sink in sinks:
        assert not sink.closed
        sink.close()
        assert sink.closed
        with pytest.raises(SinkError, match="is closed; make a new"):
            sink.publish(prediction(), photo_frame())


# -- overlay -------------------------------------------------------------------------------------


def test_overlay_without_display_is_off_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert display_problem() is not None
    with caplog.at_level(logging.WARNING):
        sink = registry.create("sinks", "overlay")
    assert not sink.enabled and not sink.wants_frames
    assert any("overlay window off" in r.message for r in caplog.records)
    sink.publish(prediction(), photo_frame())  # does nothing
    sink.close()
    # A DISPLAY that names no reachable X server is no display either.
    monkeypatch.setenv("DISPLAY", ":97")
    assert "not reachable" in (display_problem() or "")
    assert not OverlaySink().enabled
    monkeypatch.delenv("DISPLAY")
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-97")  # set, but no compositor behind it
    assert display_problem() == "the Wayland display wayland-97 is not reachable and DISPLAY is not set"


def test_overlay_off_in_a_pipeline_lets_jpeg_decode_reduced(
    tmp_path: Path, classifier: Classifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    video = make_video(tmp_path / "hd.avi", size=(1280, 720), frames=3, photos=3)
    pipeline = Pipeline(str(video), classifier, [OverlaySink()], keep_all=True)
    with pipeline:
        assert pipeline.size == (640, 360)  # nobody wants full-size frames
        pipeline.wait(30)
    assert pipeline.published == 3


# -- video ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["out.avi", "out.mp4"])
def test_video_sink_writes_a_playable_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    sink = registry.create("sinks", "video", path=path, fps=10.0)
    for i in range(8):
        sink.publish(prediction(i), photo_frame(i))
    sink.publish(prediction(8), photo_frame(8, size=(160, 120)))  # resized to the first size
    sink.publish(prediction(9), None)  # no frame: nothing to write
    sink.close()
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    assert len(frames) == 9
    assert frames[0].shape == (240, 320, 3)
    assert abs(fps - 10.0) < 0.5


def test_a_second_recording_to_the_same_file_keeps_the_first(tmp_path: Path) -> None:
    # A service restarted by systemd records to the same path again.
    path = tmp_path / "clip.avi"
    for run in range(2):
        sink = VideoSink(path=path, fps=10.0)
        for i in range(3 + run):
            sink.publish(prediction(i), photo_frame(i))
        sink.close()
    (kept,) = [p for p in tmp_path.iterdir() if p.name.startswith("clip.") and p != path]
    assert re.fullmatch(r"clip\.\d{8}-\d{6}\.avi", kept.name)
    assert (count_frames(kept), count_frames(path)) == (3, 4)
    sink = VideoSink(path=path, fps=10.0)
    sink.close()  # no frame: nothing opened, nothing moved
    assert path.exists() and len(list(tmp_path.iterdir())) == 2


def count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_live_recording_plays_at_the_cameras_pace(tmp_path: Path, classifier: Any) -> None:
    """A 30 fps camera for 1 s, inference held to 10 fps: each recorded frame is repeated up to
    the next one's capture time, so the file lasts about 1 s at 30 fps instead of 1/3 s."""
    from edge_sdk.pipeline import Pipeline

    sink = VideoSink(path=tmp_path / "live.avi")
    with Pipeline("test://?size=320x240&fps=30", classifier, [sink], max_fps=10,
                  max_frames=10) as pipeline:
        pipeline.wait(10)
    assert sink.frames == 10
    # 10 predictions 0.1 s apart span ~0.9 s of camera time: ~27 frames at 30 fps.
    written = count_frames(tmp_path / "live.avi")
    assert 22 <= written <= 33, written


def test_every_frame_recording_writes_each_frame_once(tmp_path: Path, classifier: Any) -> None:
    from support.media import make_video

    from edge_sdk.pipeline import Pipeline

    video = make_video(tmp_path / "clip.avi", size=(320, 240), frames=12, fps=30, photos=4)
    sink = VideoSink(path=tmp_path / "all.avi")
    with Pipeline(str(video), classifier, [sink], keep_all=True) as pipeline:
        pipeline.wait(30)
    assert sink.frames == 12 and count_frames(tmp_path / "all.avi") == 12


def test_video_sink_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match=r"name it \.avi"):
        VideoSink(path=tmp_path / "out.gif")
    with pytest.raises(SinkError, match="does not exist"):
        VideoSink(path=tmp_path / "missing" / "out.avi")
    with pytest.raises(ValueError, match="fps"):
        VideoSink(path=tmp_path / "out.avi", fps=0)


def test_video_sink_says_when_the_folder_is_not_writable(tmp_path: Path) -> None:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("root may write to a read-only folder (see "
                        "test_the_folder_permission_test_also_runs_for_root)")
        with pytest.raises(SinkError, match=r"folder .*read-only is not writable; choose another folder"):
            VideoSink(path=folder / "out.avi")
    finally:
        folder.chmod(0o755)


@only_for_root_with_setpriv
def test_the_folder_permission_test_also_runs_for_root() -> None:
    rerun_without_root_override(__file__, "not_writable")


# -- queues and workers --------------------------------------------------------------------------


def test_bounded_queue_policies() -> None:
    newest: BoundedQueue[int] = BoundedQueue(2, lossless=False)
    assert [newest.put(i) for i in range(4)] == [(True, 0), (True, 0), (True, 1), (True, 1)]
    assert [newest.get(0), newest.get(0), newest.get(0)] == [2, 3, None]
    fifo: BoundedQueue[int] = BoundedQueue(2, lossless=True)
    assert [fifo.put(i) for i in range(3)] == [(True, 0), (True, 0), (False, 1)]
    fifo.close()
    assert [fifo.get(0), fifo.get(0)] == [0, 1]  # what was accepted is kept, in order
    with pytest.raises(QueueClosed):
        fifo.get(0)
    blocking: BoundedQueue[int] = BoundedQueue(1, lossless=False, block=True)
    blocking.put(0)
    done = threading.Event()

    def put_then_set() -> None:
        blocking.put(1)
        done.set()

    threading.Thread(target=put_then_set, daemon=True).start()
    assert not done.wait(0.2)  # waits for room
    assert blocking.get(1) == 0
    assert done.wait(5) and blocking.get(1) == 1


class Gated:
    """A sink that waits for `gate` before each publish."""

    def __init__(self, *, lossless: bool) -> None:
        self.lossless = lossless
        self.gate = threading.Event()
        self.got: list[int] = []
        self.closed = False

    def publish(self, p: Prediction, frame: Frame | None) -> None:
        self.gate.wait(10)
        self.got.append(p.frame_index)

    def close(self) -> None:
        self.closed = True


def test_lossless_worker_counts_and_logs_overflow(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    sink = Gated(lossless=True)
    worker = SinkWorker(sink, metrics, capacity=3)
    worker.start()
    with caplog.at_level(logging.WARNING):
        accepted = [worker.put(prediction(i), None) for i in range(10)]
    # One is being published (stuck), three wait; the rest are refused, loudly.
    assert accepted.count(True) in (3, 4) and accepted[:3] == [True, True, True]
    assert any("refused" in r.message for r in caplog.records)
    sink.gate.set()
    assert worker.close(5) and sink.closed
    kept = [i for i, ok in enumerate(accepted) if ok]
    assert sink.got == kept  # every accepted prediction, in order
    stats = metrics.snapshot()["sinks"]["gated"]
    assert stats["dropped"] == 10 - len(kept) and stats["published"] == len(kept)


def test_newest_wins_worker_and_stuck_sink_at_close() -> None:
    metrics = Metrics()
    sink = Gated(lossless=False)
    worker = SinkWorker(sink, metrics, name="view")
    worker.start()
    for i in range(6):
        worker.put(prediction(i), photo_frame(i))
    assert not worker.close(0.2)  # stuck in publish: abandoned, not waited for
    stats = metrics.snapshot()["sinks"]["view"]
    assert stats["dropped"] >= 3 and stats["lossless"] is False
    sink.gate.set()


class Failing:
    """A lossless sink whose publish raises what `make()` returns."""

    lossless = True

    def __init__(self, make: Any) -> None:
        self.make = make
        self.closed = False

    def publish(self, p: Prediction, frame: Frame | None) -> None:
        raise self.make()

    def close(self) -> None:
        self.closed = True


def test_worker_logs_a_foreseeable_failure_in_one_line_and_a_bug_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    full = SinkWorker(Failing(lambda: OSError(28, "No space left on device")), metrics, name="disk")
    bug = SinkWorker(Failing(lambda: KeyError("label")), metrics, name="bug")
    with caplog.at_level(logging.DEBUG, "edge_sdk.sinks.worker"):
        for worker in (full, bug):
            worker.start()
            for i in range(5):
                worker.put(prediction(i), None)
            assert worker.close(5)
    shown = [r for r in caplog.records if r.levelno >= logging.WARNING]
    disk = [r for r in shown if r.getMessage().startswith("sink disk failed")]
    assert len(disk) == 1 and disk[0].exc_info is None
    assert disk[0].getMessage() == ("sink disk failed on prediction 0: OSError: [Errno 28] No space "
                                    "left on device")
    assert any(r.exc_info for r in caplog.records if r.levelno == logging.DEBUG)  # with -vv
    bugs = [r for r in shown if r.getMessage().startswith("sink bug failed")]
    assert len(bugs) == 1 and bugs[0].exc_info is not None  # the traceback, once
    assert (full.failures, full.last_error) == (5, "OSError: [Errno 28] No space left on device")
    assert metrics.snapshot()["sinks"]["bug"]["errors"] == 5
    assert SinkFailure(bug.failures, bug.last_error) == SinkFailure(5, "KeyError: 'label'")


def test_worker_ended_by_systemexit_lets_a_waiting_producer_go() -> None:
    """A sink raising SystemExit ends its worker; a producer waiting for room (keep_all) must
    not wait for ever, and the worker says so to whoever runs the pipeline."""
    metrics = Metrics()
    fatal: list[BaseException] = []
    sink = Failing(lambda: SystemExit(2))
    worker = SinkWorker(sink, metrics, name="quit", capacity=2, block=True, on_fatal=fatal.append)
    worker.start()
    done = threading.Event()

    def produce() -> None:
        for i in range(10):
            worker.put(prediction(i), None)
        done.set()

    threading.Thread(target=produce, daemon=True).start()
    assert done.wait(5)
    assert worker.close(5) and sink.closed
    assert len(fatal) == 1 and isinstance(fatal[0], SystemExit) and worker.fatal is fatal[0]
    stats = metrics.snapshot()["sinks"]["quit"]
    assert stats["errors"] == 1 and stats["dropped"] == 9  # none lost without a count


# -- metrics -------------------------------------------------------------------------------------


def test_metrics_snapshot_and_prometheus_buckets() -> None:
    metrics = Metrics(window=100)
    for ms in range(1, 101):
        metrics.record_prediction(Timings(inference=float(ms), age=2.0 * ms))
    depth = [5]
    metrics.register_gauge("mqtt_queue", lambda: depth[0])
    metrics.register_gauge("broken", lambda: 1 / 0)
    with pytest.raises(ValueError, match="already"):
        metrics.register_gauge("mqtt_queue", lambda: 0)
    metrics.bind_source(lambda: (150, 50, 1))
    snap = metrics.snapshot()
    json.dumps(snap)  # plain data only
    inference = snap["stages"]["inference"]
    assert inference["count"] == 100 and abs(inference["p50_ms"] - 50.5) < 0.01
    assert abs(inference["p95_ms"] - 95.05) < 0.01 and inference["max_ms"] == 100
    assert len(inference["cumulative"]) == len(BUCKETS_MS) + 1
    assert inference["cumulative"][-1] == 100 and inference["sum_ms"] == 5050
    assert snap["frames_out"] == 100 and snap["frames_in"] == 150
    assert snap["frames_dropped"] == 50 and snap["reconnects"] == 1
    assert snap["gauges"] == {"mqtt_queue": 5.0, "broken": None}
    pairs = prometheus_buckets(inference)
    assert pairs[0] == ("0.0005", 0.0) and pairs[-1] == ("+Inf", 100.0)
    assert ("0.01", 10.0) in pairs  # le is inclusive: 1..10 ms
    counts = [c for _, c in pairs]
    assert counts == sorted(counts)


def test_rate_meter() -> None:
    meter = RateMeter(window_s=5.0)
    for i in range(11):
        meter.add(1, now=100.0 + i * 0.1)  # 10 events per second
    assert abs(meter.rate(now=101.0) - 10.0) < 0.5
    assert meter.rate(now=120.0) == 0.0  # nothing for a whole window: stalled
    sampled = RateMeter()
    sampled.sample(0, now=0.0)
    sampled.sample(300, now=10.0)
    assert abs(sampled.rate(now=10.0) - 30.0) < 1e-6


def test_sink_helpers_are_plain_objects() -> None:
    """Sinks need no base class: a plain object with publish/close is enough."""
    got: list[Any] = []

    class Plain:
        def publish(self, p: Prediction, f: Frame | None) -> None:
            got.append(p)

        def close(self) -> None:
            pass

    worker = SinkWorker(Plain(), Metrics())
    assert worker.name == "plain" and worker.wants_frames and not worker.lossless
    worker.start()
    worker.put(prediction(), None)
    assert worker.close(5) and len(got) == 1


OVERLAY_SCRIPT = """
import numpy as np
from edge_sdk.metrics import Metrics
from edge_sdk.sinks.overlay import OverlaySink
from edge_sdk.sinks.worker import SinkWorker
from edge_sdk.types import Frame, Label, Prediction

sink = OverlaySink(title="edge-sdk test")
assert sink.enabled, "a reachable X display must switch the overlay on"
worker = SinkWorker(sink, Metrics())
worker.start()
image = np.full((240, 320, 3), 90, np.uint8)
for i in range(5):
    worker.put(Prediction(i, 0, (Label(281, "tabby", 0.9),)), Frame(image, i, 0, "test"))
assert worker.close(10), "the overlay did not finish"
assert sink.enabled and sink.frames_shown >= 1, (sink.enabled, sink.frames_shown)
print("shown", sink.frames_shown)
"""


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="needs Debian's xvfb package")
def test_overlay_shows_frames_on_a_real_x_server(tmp_path: Path) -> None:
    """Xvfb is a real X server without a screen; the window is drawn from the sink's thread."""
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-nolisten", "tcp",
                             "-screen", "0", "640x480x24"], pass_fds=(write_fd,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as numbers:
            display = numbers.readline().strip()  # written once the server accepts clients
        assert display.isdigit()
        env = {**os.environ, "DISPLAY": f":{display}"}
        env.pop("WAYLAND_DISPLAY", None)
        # A separate process: Qt keeps per-process state that must not leak into the suite.
        result = subprocess.run([sys.executable, "-c", OVERLAY_SCRIPT], env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "shown" in result.stdout
    finally:
        xvfb.terminate()
        xvfb.wait(10)


class SlowLosslessSink:
    """Takes 0.2 s per prediction: its queue still holds most of a short run at shutdown."""

    lossless = True
    wants_frames = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.got: list[int] = []

    def publish(self, prediction: Prediction, frame: Frame | None) -> None:
        time.sleep(0.2)
        self.got.append(prediction.frame_index)

    def close(self) -> None:
        """Nothing to release."""


def test_sinks_drain_side_by_side_at_shutdown(classifier: Any) -> None:
    """Two sinks with ~1 s of backlog each and one 1.6 s drain deadline: every worker drains
    its queue in its own thread all along, so both finish, whichever is waited for first."""
    from edge_sdk.pipeline import Pipeline

    sinks = [SlowLosslessSink("slow_a"), SlowLosslessSink("slow_b")]
    pipeline = Pipeline("test://?size=320x240&fps=30", classifier, sinks, max_frames=6,
                        drain_timeout=1.6)
    snapshot = pipeline.run()
    for sink in sinks:
        assert len(sink.got) == 6, (sink.name, sink.got)
        assert snapshot["sinks"][sink.name]["dropped"] == 0
