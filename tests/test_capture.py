"""The capture thread and the newest-frame slot, on real video files and a real MJPEG stream."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any, cast

import pytest
from support.media import make_video
from support.mjpeg_server import MjpegServer

from edge_sdk.capture import Backoff, Capture, LatestFrame
from edge_sdk.errors import SourceError
from edge_sdk.sources import open_source
from edge_sdk.sources.base import Packet
from edge_sdk.sources.mjpeg import MjpegHttpSource
from edge_sdk.sources.synthetic import read_number
from edge_sdk.types import Frame

FRAMES = 30


@pytest.fixture(scope="module")
def mjpeg_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(
        tmp_path_factory.mktemp("video") / "cam.avi", codec="mjpeg", size=(640, 360), frames=FRAMES
    )


@pytest.fixture(scope="module")
def h264_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(
        tmp_path_factory.mktemp("video") / "cam.mp4", codec="h264", size=(640, 360), frames=FRAMES
    )


@pytest.fixture()
def server() -> Any:
    with MjpegServer(fps=30, size=(320, 240)) as srv:
        yield srv


def drain(capture: Capture, *, delay: float = 0.0, limit: int = 10_000) -> list[Frame]:
    """Take frames until the capture finishes, sleeping `delay` after each (a slow consumer)."""
    frames: list[Frame] = []
    while len(frames) < limit and not capture.finished:
        frame = capture.get(timeout=5.0)
        if frame is not None:
            frames.append(frame)
            time.sleep(delay)
    return frames


# -- the slot -----------------------------------------------------------------------------------


def test_slot_keeps_the_newest_and_counts_drops() -> None:
    slot: LatestFrame[int] = LatestFrame()
    assert slot.get(timeout=0.01) is None
    for n in range(5):
        assert slot.put(n)
    assert slot.get(timeout=0) == 4
    assert slot.dropped == 4
    assert slot.get(timeout=0.01) is None


def test_slot_close_wakes_a_waiting_consumer() -> None:
    slot: LatestFrame[int] = LatestFrame()
    got: list[int | None] = []
    thread = threading.Thread(target=lambda: got.append(slot.get()))
    thread.start()
    time.sleep(0.05)
    slot.close()
    thread.join(2)
    assert got == [None] and not thread.is_alive()
    assert not slot.put(1)


def test_slot_close_hands_out_what_it_holds_unless_discarded() -> None:
    slot: LatestFrame[int] = LatestFrame()
    slot.put(7)
    slot.close()
    assert slot.get() == 7
    assert slot.get() is None
    other: LatestFrame[int] = LatestFrame()
    other.put(7)
    other.close(discard=True)
    assert other.get() is None


def test_keep_all_slot_pushes_back_instead_of_dropping() -> None:
    slot: LatestFrame[int] = LatestFrame(keep_all=True, capacity=2)
    assert slot.put(1) and slot.put(2)
    assert not slot.put(3, timeout=0.05)  # full: the producer waits
    taken: list[int | None] = []
    threading.Timer(0.05, lambda: taken.append(slot.get())).start()
    assert slot.put(3, timeout=2.0)
    assert [taken[0], slot.get(), slot.get()] == [1, 2, 3]
    assert slot.dropped == 0


# -- backoff ------------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = Backoff(initial=0.5, maximum=10.0, jitter=0.0)
    assert [policy.delay(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    jittered = Backoff(jitter=0.2)
    delays = [jittered.delay(3) for _ in range(50)]
    assert all(3.2 <= d <= 4.8 for d in delays) and len(set(delays)) > 1
    assert jittered.delay(1000) <= 12.0


@pytest.mark.parametrize(
    "kwargs", [{"initial": 0}, {"initial": 2, "maximum": 1}, {"factor": 0.5}, {"jitter": 1.5}]
)
def test_backoff_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)  # type: ignore[arg-type]


# -- files --------------------------------------------------------------------------------------


@pytest.mark.parametrize("video", ["mjpeg_video", "h264_video"])
def test_keep_all_gets_every_frame_of_a_file(video: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(video)
    with Capture(lambda: open_source(str(path), reduce=2), keep_all=True) as capture:
        assert (capture.fps, capture.live) == (30.0, False)
        frames = drain(capture, delay=0.005)  # a consumer slower than the reader
    assert [read_number(f.image) for f in frames] == list(range(FRAMES))
    assert [f.index for f in frames] == list(range(FRAMES))
    assert (capture.frames_in, capture.frames_out, capture.frames_dropped) == (FRAMES, FRAMES, 0)
    assert capture.ended and capture.finished and capture.error is None


def test_end_of_file_ends_iteration(mjpeg_video: Path) -> None:
    capture = Capture(open_source(str(mjpeg_video)), keep_all=True)
    with capture:
        frames = list(capture)
    assert len(frames) == FRAMES
    assert capture.get(timeout=0.1) is None
    assert capture.ended


def test_slow_consumer_of_a_file_without_keep_all_drops(mjpeg_video: Path) -> None:
    with Capture(open_source(str(mjpeg_video))) as capture:
        frames = drain(capture, delay=0.02)
    assert capture.frames_in == FRAMES
    assert capture.frames_dropped > 0
    assert len(frames) + capture.frames_dropped == FRAMES
    indices = [f.index for f in frames]
    assert indices == sorted(set(indices))
    assert indices[-1] == FRAMES - 1  # the newest frame is never the one dropped


def test_realtime_paces_a_file_to_its_frame_rate(mjpeg_video: Path) -> None:
    began = time.monotonic()
    with Capture(open_source(str(mjpeg_video)), keep_all=True, realtime=True) as capture:
        frames = drain(capture)
    elapsed = time.monotonic() - began
    assert len(frames) == FRAMES
    # 30 frames at 30 fps: about 1 s (29 intervals). Loose: pacing can only make it later.
    assert 0.85 < elapsed < 6.0
    spans = (frames[-1].timestamp_ns - frames[0].timestamp_ns) / 1e9
    assert spans > 0.85  # timestamps are the paced release times


def test_realtime_without_keep_all_behaves_like_a_camera(mjpeg_video: Path) -> None:
    with Capture(open_source(str(mjpeg_video)), realtime=True) as capture:
        frames = drain(capture, delay=0.1)  # 3 frame intervals per frame
    assert capture.frames_dropped > FRAMES // 2
    assert frames[-1].index == FRAMES - 1


# -- live sources -------------------------------------------------------------------------------


class CountingMjpegSource(MjpegHttpSource):
    """The real stream reader, counting its decodes."""

    decodes = 0

    def decode(self, packet: Packet) -> Frame | None:
        CountingMjpegSource.decodes += 1
        return super().decode(packet)


def test_live_stream_drops_stale_frames_before_decoding(server: MjpegServer) -> None:
    CountingMjpegSource.decodes = 0
    with Capture(lambda: CountingMjpegSource(server.url, reduce=2)) as capture:
        assert capture.live and capture.size == (160, 120)
        frames = [capture.get(timeout=5.0) for _ in range(5)]
        for _ in range(4):
            time.sleep(0.15)  # inference slower than the camera
            frames.append(capture.get(timeout=5.0))
    assert None not in frames
    stamps = [read_number(f.image) for f in frames if f]
    assert None not in stamps
    numbers = cast(list[int], stamps)  # every stamp was read: checked above
    assert numbers == sorted(numbers)
    assert capture.frames_dropped >= 6
    # Only frames that were handed out were decoded (plus the one read when opening).
    assert CountingMjpegSource.decodes == capture.frames_out == len(frames)
    assert capture.frames_in > capture.frames_out


def test_live_test_source_with_a_slow_consumer_counts_drops() -> None:
    with Capture(open_source("test://", size=(160, 120), fps=100.0, count=60)) as capture:
        frames = drain(capture, delay=0.05)
    indices = [f.index for f in frames]
    assert indices == sorted(indices) and indices[-1] == 59
    assert capture.frames_dropped >= 30
    assert capture.frames_in + (60 - capture.frames_in) >= len(frames)


def test_stream_server_restart_reconnects(
    server: MjpegServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge_sdk.capture")
    policy = Backoff(initial=0.2, maximum=1.0)
    with Capture(lambda: open_source(server.url, timeout=2.0), reconnect=policy) as capture:
        before = [capture.get(timeout=5.0) for _ in range(5)]
        server.stop()
        time.sleep(1.0)  # down for a while: several reconnect attempts fail
        server.start()
        restarted = time.monotonic()
        after: list[Frame] = []
        while len(after) < 5 and time.monotonic() - restarted < 10:
            frame = capture.get(timeout=1.0)
            if frame is not None and capture.reconnects >= 1:
                after.append(frame)
        resumed_after = time.monotonic() - restarted
    assert None not in before and len(after) == 5
    assert resumed_after < 5.0
    assert capture.reconnects >= 1 and not capture.ended
    indices = [f.index for f in before if f] + [f.index for f in after]
    assert indices == sorted(set(indices)), "indices must keep increasing across the reconnect"
    assert "reconnect attempt 1" in caplog.text and "reconnected to" in caplog.text


def test_stalled_stream_reconnects(server: MjpegServer) -> None:
    policy = Backoff(initial=0.1, maximum=0.5)
    with Capture(lambda: open_source(server.url, timeout=0.5), reconnect=policy) as capture:
        assert capture.get(timeout=5.0) is not None
        server.paused = True  # connection stays open, frames stop
        deadline = time.monotonic() + 5
        while capture.error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        server.paused = False
        deadline = time.monotonic() + 5
        while capture.reconnects == 0 and time.monotonic() < deadline:
            capture.get(timeout=0.2)
        assert capture.get(timeout=5.0) is not None
    assert isinstance(capture.error, SourceError)
    assert capture.reconnects >= 1


def test_failed_live_source_without_reconnect_ends(server: MjpegServer) -> None:
    with Capture(open_source(server.url, timeout=1.0)) as capture:
        assert capture.get(timeout=5.0) is not None
        server.stop()
        frames = drain(capture)
    assert len(frames) <= 2  # at most what was already held
    assert capture.ended and capture.finished


def test_reconnect_gives_up_after_max_attempts(server: MjpegServer) -> None:
    policy = Backoff(initial=0.05, maximum=0.1, max_attempts=3)
    with Capture(lambda: open_source(server.url, timeout=1.0), reconnect=policy) as capture:
        assert capture.get(timeout=5.0) is not None
        server.stop()
        drain(capture)
    assert capture.ended and capture.reconnects == 0
    assert isinstance(capture.error, SourceError) or capture.error is None


def test_stop_returns_while_a_read_is_blocked(server: MjpegServer) -> None:
    capture = Capture(open_source(server.url, timeout=30.0)).start()
    assert capture.get(timeout=5.0) is not None
    server.paused = True
    waiter: list[Frame | None] = []
    thread = threading.Thread(target=lambda: waiter.append(capture.get()))
    thread.start()
    time.sleep(0.1)
    began = time.monotonic()
    capture.stop()
    thread.join(2)
    assert time.monotonic() - began < 2.0
    assert waiter == [None] and capture.finished and not capture.ended


def test_stop_cuts_short_a_reopen_that_hangs(server: MjpegServer) -> None:
    """The stream drops and the reopen connects to a server that never answers (a real socket
    that accepts and stays silent): stop() returns at once, and the reopen gives up its
    connection then instead of at its 30 s timeout."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    hung = f"http://127.0.0.1:{silent.getsockname()[1]}/stream"
    opened: list[str] = []

    def factory() -> Any:
        url = server.url if not opened else hung
        opened.append(url)
        return open_source(url, timeout=30.0)

    try:
        capture = Capture(factory, reconnect=Backoff(initial=0.05, maximum=0.1, jitter=0.0))
        capture.start()
        assert capture.get(timeout=5.0) is not None
        server.stop()
        deadline = time.monotonic() + 10.0
        while hung not in opened and time.monotonic() < deadline:
            time.sleep(0.02)
        assert hung in opened
        time.sleep(0.3)  # inside the connect now: the silent server holds it
        began = time.monotonic()
        capture.stop()
        assert time.monotonic() - began < 1.0  # the join's own timeout is 2 s
        assert capture.get() is None
        conn, _ = silent.accept()
        with conn:
            conn.settimeout(2.0)
            while conn.recv(4096):  # the request, then the end: the reopen hung up
                pass
        assert time.monotonic() - began < 2.0
    finally:
        silent.close()


def test_open_errors_surface_from_start() -> None:
    capture = Capture(lambda: open_source("v4l2:///dev/video9"))
    with pytest.raises(SourceError, match="no camera at /dev/video9; try --source FILE"):
        capture.start()


def test_bad_arguments(mjpeg_video: Path) -> None:
    source = open_source(str(mjpeg_video))
    with pytest.raises(ValueError, match="factory"):
        Capture(source, reconnect=Backoff())
    with pytest.raises(TypeError):
        Capture(42)  # type: ignore[arg-type]
    capture = Capture(source).start()
    with pytest.raises(RuntimeError):
        capture.start()
    capture.stop()
