"""Every source scheme that can run here, on real files and a real local MJPEG stream.

Hardware this machine lacks (USB camera, Raspberry Pi camera, Jetson) is covered by the URI
parsing, the errors a user sees without it, the Jetson pipeline string, and the picamera2 adapter
run against a fake with picamera2's API.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, cast

import cv2
import numpy as np
import pytest
from support.media import make_jpeg, make_video
from support.mjpeg_server import MjpegServer, free_port
from support.privileges import only_for_root_with_setpriv, rerun_without_root_override
from support.rtsp_server import RtspServer
from support.rtsp_server import missing as rtsp_server_missing

from edge_sdk.capture import Backoff, Capture
from edge_sdk.errors import BackendUnavailable, ConfigError, SourceError
from edge_sdk.protocols import FrameSource
from edge_sdk.sources import SCHEMES_HELP, open_source, route, source_options, uses_packets
from edge_sdk.sources.base import decode_jpeg, reduced_size
from edge_sdk.sources.csi import CsiSource, csi_number
from edge_sdk.sources.gstreamer import opencv_has_gstreamer
from edge_sdk.sources.jetson import is_jetson, nvargus_pipeline
from edge_sdk.sources.mjpeg import MjpegHttpSource
from edge_sdk.sources.opening import OpenInterrupted, stoppable_opens
from edge_sdk.sources.rtsp import OPTIONS_VAR, ffmpeg_options
from edge_sdk.sources.synthetic import SyntheticSource, read_number, stamp_number
from edge_sdk.sources.v4l2 import V4L2Source, v4l2_device
from edge_sdk.sources.video import VideoFileSource
from edge_sdk.types import Frame

FRAMES = 24


@pytest.fixture(scope="module")
def mjpeg_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "cam.avi", codec="mjpeg", frames=FRAMES)


@pytest.fixture(scope="module")
def h264_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "cam.mp4", codec="h264", frames=FRAMES)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for i, size in enumerate([(640, 480), (320, 240), (800, 600)]):
        make_jpeg(folder / f"img{i}.jpg", size)
    cv2.imwrite(str(folder / "img3.png"), np.full((50, 60, 3), 200, np.uint8))
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture()
def server() -> Any:
    with MjpegServer(fps=30, size=(640, 480)) as srv:
        yield srv


def read_all(source: FrameSource, limit: int = 10_000) -> list[Frame]:
    frames: list[Frame] = []
    while len(frames) < limit and (frame := source.read()) is not None:
        frames.append(frame)
    return frames


def read_frame(source: FrameSource) -> Frame:
    """The next frame, which the test expects there to be."""
    frame = source.read()
    assert frame is not None
    return frame


def assert_bgr(frame: Frame | None, size: tuple[int, int]) -> None:
    assert frame is not None
    assert frame.image.dtype == np.uint8
    assert frame.image.shape == (size[1], size[0], 3)


def unreadable(path: Path) -> Path:
    """chmod 000 `path`; skip the test when this process reads it anyway (root: see
    `test_the_permission_tests_also_run_for_root`)."""
    path.chmod(0)
    try:
        path.read_bytes()
    except PermissionError:
        return path
    pytest.skip("root reads a chmod-000 file (see test_the_permission_tests_also_run_for_root)")


# -- URIs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        ("0", "v4l2"),
        ("2", "v4l2"),
        ("/dev/video1", "v4l2"),
        ("v4l2:///dev/video0", "v4l2"),
        ("clip.mp4", "file"),
        ("file:///data/clip.mkv", "file"),
        ("photo.JPG", "image"),
        ("file:///data/photo.png", "image"),
        ("photos/*.jpg", "image"),
        ("http://cam.local/stream", "http"),
        ("https://cam.local/stream", "https"),
        ("RTSP://cam.local:554/h264", "rtsp"),
        ("gst://videotestsrc ! appsink", "gst"),
        ("csi://0", "csi"),
        ("test://?size=320x240", "test"),
    ],
)
def test_route_picks_backend_by_scheme(uri: str, name: str) -> None:
    assert route(uri) == name


def test_route_sends_a_folder_to_the_image_source(image_folder: Path) -> None:
    assert route(str(image_folder)) == "image"


@pytest.mark.parametrize("uri", ["", "   ", "foo://bar", "ftp://cam/x.mjpg", "image://x.jpg"])
def test_unknown_or_empty_uri_lists_the_schemes(uri: str) -> None:
    with pytest.raises(ConfigError) as err:
        open_source(uri)
    assert SCHEMES_HELP in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("v4l2://video0", "v4l2:///dev/videoN"),
        ("csi://front", "csi://N"),
        ("test://?size=huge", "640x480"),
        ("test://?colour=red", "unknown option"),
        ("http://", "http://host"),
        ("http://cam:99999/x", "port"),
        ("rtsp:///nohost", "rtsp://host"),
        ("rtsp://cam:abc/x", "rtsp://host[:port]/path"),
        ("rtsp://cam:65536/x", "Port out of range"),
        ("rtsp://[::1/x", "Invalid IPv6 URL"),
        ("http://[::1/x", "http://host[:port]/path"),
        ("https://cam:-1/x", "https://"),
        ("gst://", "pipeline"),
        ("file://", "file:///PATH"),
        ("test://[", "test://?size=WxH"),
        ("test://cam?size=320x240", "before the '?'"),
        ("test://?fps=nan", "finite"),
        ("test://?fps=inf", "finite"),
        ("test://?fps=0.001", "fps must be within [0.01, 1000]"),
        ("test://?count=1e3", "count must be a whole number"),
        ("test://?size=100000x100000", "at most 8192x8192"),
    ],
)
def test_malformed_uri_is_a_config_error(uri: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        open_source(uri)
    assert fragment in str(err.value)
    assert repr(uri) in str(err.value) and "\n" not in str(err.value)


def test_malformed_uri_error_hides_the_password() -> None:
    with pytest.raises(ConfigError) as err:
        open_source("rtsp://admin:s3cret@cam:abc/live")
    assert "s3cret" not in str(err.value) and "rtsp://admin:***@cam:abc/live" in str(err.value)
    # A password holding "/" ends urllib's host part early; neither it nor a piece of it shows.
    for uri in ("http://admin:se/cret@127.0.0.1:8080/video", "rtsp://admin:pa/ss99@cam/live"):
        with pytest.raises(ConfigError) as err:
            open_source(uri)
        assert "cret" not in str(err.value) and "ss99" not in str(err.value), err.value
        assert "://admin:***@" in str(err.value) and "percent-encode" in str(err.value)


def test_synthetic_options_are_checked_like_the_query() -> None:
    with pytest.raises(ConfigError, match="fps must be a finite number"):
        SyntheticSource(fps=float("nan"))
    with pytest.raises(ConfigError, match="count must be a whole number"):
        SyntheticSource(count="many")  # type: ignore[arg-type]
    with SyntheticSource("test:///?size=64x48&count=1") as source:  # a slash before ? is fine
        assert source.size == (64, 48) and source.read() is not None and source.read() is None


@pytest.mark.parametrize(("options", "expected"), [
    ({"fps": 0}, "bad test:// source option: fps must be within [0.01, 1000], not 0"),
    ({"count": -1}, "bad test:// source option: count must be 0 (no end) or more, not -1"),
    ({"size": "9000x10"}, "bad test:// source option: size must be at most 8192x8192, not 9000x10"),
])
def test_a_bad_synthetic_option_is_blamed_on_the_option_not_the_uri(
    options: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        open_source("test://?fps=5", **options)
    assert str(err.value) == expected
    with pytest.raises(ConfigError, match=r"bad test:// source 'test://\?count=-1': count must be 0 "
                                          r"\(no end\) or more, not -1; expected test://\?size="):
        open_source("test://?count=-1", fps=5)  # the URI's own value: the URI and its form


def test_unknown_option_lists_the_accepted_ones(mjpeg_video: Path) -> None:
    with pytest.raises(ConfigError, match="accepted: reduce, loop"):
        open_source(str(mjpeg_video), quality=3)
    with pytest.raises(ValueError, match="reduce"):
        open_source(str(mjpeg_video), reduce=3)


def test_source_options_tell_where_reduce_applies() -> None:
    assert "reduce" in source_options("clip.avi")
    assert "reduce" in source_options("http://cam/stream")
    assert "reduce" in source_options("photos/*.jpg")
    assert "reduce" in source_options("0")  # USB cameras sending MJPG
    assert "reduce" not in source_options("test://")


# -- USB cameras (none here) -------------------------------------------------------------------


def test_v4l2_uri_parsing() -> None:
    assert v4l2_device("0") == "/dev/video0"
    assert v4l2_device("12") == "/dev/video12"
    assert v4l2_device("v4l2:///dev/video3") == "/dev/video3"
    assert v4l2_device("v4l2://1") == "/dev/video1"
    assert v4l2_device("/dev/v4l/by-id/usb-cam") == "/dev/v4l/by-id/usb-cam"


@pytest.mark.skipif(os.path.exists("/dev/video0"), reason="this machine has a camera")
def test_missing_camera_says_what_to_do() -> None:
    with pytest.raises(SourceError) as err:
        open_source("0")
    assert str(err.value) == "no camera at /dev/video0; try --source FILE"
    with pytest.raises(SourceError, match="no camera at /dev/video9; try --source FILE"):
        open_source("v4l2:///dev/video9", size="1280x720", fps=30)


def test_v4l2_rejects_bad_options() -> None:
    with pytest.raises(ConfigError, match="fourcc"):
        open_source("0", fourcc="MJPEG")
    with pytest.raises(ConfigError, match="size"):
        open_source("0", size="big")


# -- video files -------------------------------------------------------------------------------


def test_mjpeg_video_is_read_as_jpeg_packets(mjpeg_video: Path) -> None:
    with open_source(str(mjpeg_video)) as source:
        assert isinstance(source, VideoFileSource)
        assert uses_packets(source)
        assert source.codec == "MJPG"
        assert (source.size, source.fps, source.live) == ((1280, 720), 30.0, False)
        assert source.frame_count == FRAMES
        frames = read_all(source)
    assert len(frames) == FRAMES
    assert_bgr(frames[0], (1280, 720))
    assert [read_number(f.image) for f in frames] == list(range(FRAMES))
    assert [f.index for f in frames] == list(range(FRAMES))
    stamps = [f.timestamp_ns for f in frames]
    assert stamps == sorted(stamps)
    assert all(f.source == str(mjpeg_video) for f in frames)


@pytest.mark.parametrize("reduce", [2, 4, 8])
def test_mjpeg_video_decodes_at_reduced_size(mjpeg_video: Path, reduce: int) -> None:
    with open_source(f"file://{mjpeg_video}", reduce=reduce) as source:
        expected = (1280 // reduce, 720 // reduce)
        assert source.size == expected
        frames = read_all(source)
    assert len(frames) == FRAMES
    assert_bgr(frames[-1], expected)
    # The frame number survives the reduced decode: same pictures, just smaller.
    assert [read_number(f.image) for f in frames] == list(range(FRAMES))


def test_reduce_can_change_on_an_open_source(mjpeg_video: Path) -> None:
    with open_source(str(mjpeg_video)) as source:
        assert isinstance(source, VideoFileSource)
        source.reduce = 4
        assert source.size == (320, 180)
        assert_bgr(source.read(), (320, 180))


def test_h264_video_is_decoded_by_ffmpeg(h264_video: Path) -> None:
    with open_source(str(h264_video), reduce=2) as source:
        assert isinstance(source, VideoFileSource)
        assert not uses_packets(source)
        assert source.codec.lower() in ("h264", "avc1")
        assert (source.size, source.reduce, source.fps) == ((1280, 720), 1, 30.0)
        frames = read_all(source)
    assert len(frames) == FRAMES
    assert_bgr(frames[0], (1280, 720))
    assert [read_number(f.image) for f in frames] == list(range(FRAMES))


def test_looping_video_starts_again(mjpeg_video: Path) -> None:
    with open_source(str(mjpeg_video), loop=True) as source:
        frames = read_all(source, limit=FRAMES + 5)
    assert [read_number(f.image) for f in frames[FRAMES:]] == [0, 1, 2, 3, 4]
    assert [f.index for f in frames] == list(range(FRAMES + 5))


def test_missing_or_broken_video_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such video file"):
        open_source(str(tmp_path / "nope.mp4"))
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    with pytest.raises(SourceError, match=r"pipe.mp4 is not a regular file; give a video file"):
        open_source(str(fifo))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(SourceError, match=r"cannot read .* as a video"):
        open_source(str(junk))


def test_unreadable_video_says_permission_denied(tmp_path: Path, mjpeg_video: Path) -> None:
    video = tmp_path / "v.avi"
    video.write_bytes(mjpeg_video.read_bytes())
    with pytest.raises(SourceError, match=r"cannot read .*v\.avi: permission denied; give the user"):
        open_source(str(unreadable(video)))


def test_failed_opens_leave_stderr_to_the_error(tmp_path: Path) -> None:
    """OpenCV's and FFmpeg's own lines about a failed open stay off stderr (a fresh process:
    FFmpeg's level is settled at its first open), and OpenCV's log level is restored."""
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    script = (
        "import cv2\n"
        "from edge_sdk.sources import open_source\n"
        "level = cv2.utils.logging.getLogLevel()\n"
        f"for uri in [{str(junk)!r}, 'rtsp://127.0.0.1:{free_port()}/x']:\n"
        "    try:\n"
        "        open_source(uri)\n"
        "    except Exception as exc:\n"
        "        print(exc)\n"
        "assert cv2.utils.logging.getLogLevel() == level > 0\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, env={k: v for k, v in os.environ.items()
                                             if not k.startswith("OPENCV_")})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("cannot read") and "as a video" in lines[0]
    assert "Connection refused" in lines[1]  # what FFmpeg would have printed, in our message


# -- images ------------------------------------------------------------------------------------


def test_single_image_gives_one_frame(image_folder: Path) -> None:
    with open_source(str(image_folder / "img0.jpg")) as source:
        assert (source.size, source.live, source.fps) == ((640, 480), False, 0.0)
        frames = read_all(source)
    assert len(frames) == 1
    assert_bgr(frames[0], (640, 480))


def test_folder_gives_its_images_in_name_order(image_folder: Path) -> None:
    with open_source(str(image_folder), reduce=2) as source:
        frames = read_all(source)
    # img0..img2 (JPEG) and img3.png; notes.txt is not an image.
    shapes = [f.image.shape[:2] for f in frames]
    assert shapes == [(240, 320), (120, 160), (300, 400), (25, 30)]


def test_glob_selects_matching_images(image_folder: Path) -> None:
    with open_source(f"{image_folder}/img[12].jpg") as source:
        assert [f.image.shape[1] for f in read_all(source)] == [320, 800]


def test_corrupt_image_in_a_folder_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_jpeg(tmp_path / "a.jpg", (64, 48))
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8 truncated")
    make_jpeg(tmp_path / "c.jpg", (64, 48))
    with open_source(str(tmp_path)) as source:
        frames = read_all(source)
    assert [f.index for f in frames] == [0, 2]
    assert f"skipping {tmp_path / 'b.jpg'}: it does not decode" in caplog.text


def test_an_image_opencv_cannot_shrink_is_decoded_whole_and_a_pixel_bomb_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_jpeg(tmp_path / "a.jpg", (640, 480))
    cv2.imwrite(str(tmp_path / "b.png"), np.full((3, 3, 3), 200, np.uint8))  # 1/4 of 3 px is 0
    # A JPEG whose header claims 65000 x 65000 pixels, over OpenCV's limit.
    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (65000).to_bytes(2, "big") * 2  # height, width
    (tmp_path / "c.jpg").write_bytes(bytes(data))
    with open_source(str(tmp_path), reduce=4) as source:
        frames = read_all(source)
    assert [f.image.shape[:2] for f in frames] == [(120, 160), (3, 3)]
    assert f"skipping {tmp_path / 'c.jpg'}: it does not decode" in caplog.text


def test_a_truncated_video_says_it_ended_early(
    tmp_path: Path, mjpeg_video: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # FFmpeg reads up to the damage and reports a normal end: without a word the run "succeeds".
    cut = tmp_path / "cut.avi"
    data = mjpeg_video.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with open_source(str(cut)) as source:
        frames = read_all(source)
    assert 0 < len(frames) < FRAMES
    assert re.search(rf"cut.avi ended after \d+ of its {FRAMES} frames; the file may be truncated",
                     caplog.text)


def test_files_named_like_a_glob_open_as_themselves(tmp_path: Path, mjpeg_video: Path) -> None:
    image = tmp_path / "cam[1].png"
    cv2.imwrite(str(image), np.full((24, 32, 3), 99, np.uint8))
    make_jpeg(tmp_path / "cam1.png.jpg", (64, 48))  # what the pattern "cam[1].png" is not
    with open_source(str(image)) as source:
        assert [f.image.shape[:2] for f in read_all(source)] == [(24, 32)]
    video = tmp_path / "what?.avi"
    shutil.copy(mjpeg_video, video)
    with open_source(str(video)) as source:
        assert source.read() is not None


def test_a_folder_removed_mid_run_is_one_source_error(tmp_path: Path) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    for i in range(50):
        make_jpeg(folder / f"{i:03d}.jpg", (32, 24))
    with open_source(str(folder)) as source:
        assert source.read() is not None
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
        with pytest.raises(SourceError, match=f"the folder {folder} is gone"):
            source.read()


def test_a_looping_folder_whose_images_all_vanished_ends_instead_of_spinning(tmp_path: Path) -> None:
    for i in range(3):
        make_jpeg(tmp_path / f"{i}.jpg", (32, 24))
    with open_source(str(tmp_path), loop=True) as source:
        assert source.read() is not None
        for i in range(3):
            (tmp_path / f"{i}.jpg").unlink()
        with pytest.raises(SourceError, match="none of its 3 images can be read or decoded any more"):
            source.read()


def test_a_looping_folder_whose_images_all_stopped_decoding_ends_instead_of_spinning(
    tmp_path: Path,
) -> None:
    for i in range(2):
        make_jpeg(tmp_path / f"{i}.jpg", (32, 24))
    with open_source(str(tmp_path), loop=True) as source:
        assert source.read() is not None
        for i in range(2):
            (tmp_path / f"{i}.jpg").write_bytes(b"")  # emptied after the open
        with pytest.raises(SourceError, match="none of its 2 images can be read or decoded any more"):
            read_all(source)


def test_unreadable_image_is_a_source_error(tmp_path: Path) -> None:
    image = unreadable(make_jpeg(tmp_path / "cat.jpg", (64, 48)))
    with pytest.raises(SourceError, match=r"cannot read .*cat\.jpg: permission denied; give the user "
                       r"running edge-classify read access \(chmod/chown\)$"):
        open_source(str(image))


@pytest.mark.parametrize("pattern", ["", "/*.jpg"])
def test_unreadable_image_in_a_folder_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, pattern: str
) -> None:
    unreadable(make_jpeg(tmp_path / "a.jpg", (64, 48)))
    make_jpeg(tmp_path / "b.jpg", (32, 24))
    unreadable(make_jpeg(tmp_path / "c.jpg", (64, 48)))
    with open_source(f"{tmp_path}{pattern}", loop=True) as source:
        assert source.size == (32, 24)
        frames = read_all(source, limit=3)
    assert [f.index for f in frames] == [1, 4, 7]  # b.jpg, three times round
    for name in ("a.jpg", "c.jpg"):  # each once, although the loop meets it three times
        assert caplog.text.count(f"skipping {tmp_path / name}: permission denied") == 1
    locked = tmp_path / "locked"
    locked.mkdir()
    unreadable(make_jpeg(locked / "x.jpg", (64, 48)))
    with pytest.raises(SourceError, match=r"no usable image among the 1 .*permission denied"):
        open_source(str(locked))


@only_for_root_with_setpriv
def test_the_permission_tests_also_run_for_root() -> None:
    rerun_without_root_override(__file__, "unreadable")


def test_empty_folder_or_missing_image_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path))
    with pytest.raises(SourceError, match="no images"):
        open_source(f"{tmp_path}/*.jpg")
    with pytest.raises(SourceError, match="no such file"):
        open_source(str(tmp_path / "cat.jpg"))


# -- test:// ------------------------------------------------------------------------------------


def test_synthetic_source_from_query() -> None:
    with open_source("test://?size=320x240&fps=15&count=4&live=0") as source:
        assert isinstance(source, SyntheticSource)
        assert (source.size, source.fps, source.live) == ((320, 240), 15.0, False)
        frames = read_all(source)
    assert [read_number(f.image) for f in frames] == [0, 1, 2, 3]
    assert_bgr(frames[0], (320, 240))


def test_synthetic_live_source_skips_frames_for_a_slow_reader() -> None:
    with open_source("test://", size=(160, 120), fps=200.0, count=40) as source:
        assert source.live
        first = source.read()
        time.sleep(0.06)  # about 12 frame intervals: a camera would not wait
        second = source.read()
    assert first is not None and second is not None
    assert second.index > first.index + 1
    assert read_number(second.image) == second.index


def test_stamp_survives_jpeg_and_reduced_decode() -> None:
    image = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    stamp_number(image, 123_456)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert ok
    for reduce in (1, 2, 4, 8):
        decoded = decode_jpeg(jpeg, reduce)
        assert decoded is not None
        assert read_number(decoded) == 123_456
    assert read_number(np.zeros((720, 1280, 3), np.uint8)) is None


def test_reduced_size_rounds_up_like_libjpeg() -> None:
    image = np.zeros((255, 341, 3), np.uint8)
    ok, jpeg = cv2.imencode(".jpg", image)
    assert ok
    for reduce in (2, 4, 8):
        decoded = decode_jpeg(jpeg, reduce)
        assert decoded is not None
        assert reduced_size((341, 255), reduce) == (decoded.shape[1], decoded.shape[0])


# -- HTTP MJPEG ---------------------------------------------------------------------------------


def test_http_mjpeg_stream(server: MjpegServer) -> None:
    with open_source(server.url) as source:
        assert (source.size, source.live) == ((640, 480), True)
        frames = [source.read() for _ in range(12)]
        fps = source.fps
    stamps = [read_number(f.image) for f in frames if f is not None]
    assert len(stamps) == 12 and None not in stamps
    numbers = cast(list[int], stamps)  # every stamp was read: checked above
    assert numbers == sorted(numbers) and len(set(numbers)) == 12
    assert_bgr(frames[0], (640, 480))
    assert 5 < fps < 200  # measured from arrivals; loose, the machine is shared


def test_http_stream_skips_stale_frames_before_decoding(server: MjpegServer) -> None:
    with open_source(server.url, reduce=2) as source:
        assert isinstance(source, MjpegHttpSource)
        source.read()
        first = source.read()
        time.sleep(0.4)  # about 12 frames pile up in the socket
        newest_sent = max(server.sent_ns)
        fresh = source.read()
        assert source.skipped >= 3
    assert first is not None and fresh is not None
    assert_bgr(fresh, (320, 240))
    assert fresh.index > first.index + 3
    # What came out is the newest frame the server had sent, not the oldest waiting one.
    number = read_number(fresh.image)
    assert number is not None and number >= newest_sent - 1


def test_http_stream_without_content_length() -> None:
    with (
        MjpegServer(fps=60, size=(320, 240), content_length=False) as srv,
        open_source(srv.url) as source,
    ):
        stamps = [read_number(read_frame(source).image) for _ in range(5)]
    assert None not in stamps
    numbers = cast(list[int], stamps)  # every stamp was read: checked above
    assert numbers == sorted(numbers)


def test_http_login_from_the_uri() -> None:
    with MjpegServer(fps=30, size=(320, 240), auth=("ann", "s3cret")) as srv:
        with pytest.raises(SourceError, match="needs a login"):
            open_source(srv.url)
        with pytest.raises(SourceError, match="refused the login in the URI; check the user name"):
            open_source(srv.url.replace("http://", "http://ann:wrong@"))
        with open_source(srv.url.replace("http://", "http://ann:s3cret@")) as source:
            assert source.read() is not None


class CommentingServer(MjpegServer):
    """An MJPEG camera whose JPEGs carry a comment holding the boundary text."""

    def jpeg(self, n: int) -> bytes:
        data = super().jpeg(n)
        comment = f"camera {self.boundary} {n:04d}".encode()
        segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
        return data[:2] + segment + data[2:]


def test_the_boundary_text_inside_a_jpeg_is_no_delimiter() -> None:
    srv = CommentingServer(fps=30, size=(160, 120), content_length=False, boundary="frame")
    with srv, open_source(srv.url) as source:
        frames = [read_frame(source) for _ in range(3)]
    assert all(f.image.shape == (120, 160, 3) for f in frames)


class TurningServer(MjpegServer):
    """An MJPEG camera that sends parts which are not JPEG while `broken` is set."""

    broken = False

    def jpeg(self, n: int) -> bytes:
        return b"\xff\xd8 not a JPEG at all" if self.broken else super().jpeg(n)


def test_a_camera_whose_frames_stop_decoding_is_reconnected(caplog: pytest.LogCaptureFixture) -> None:
    from edge_sdk.capture import Backoff, Capture

    srv = TurningServer(fps=60, size=(160, 120))
    with srv:
        capture = Capture(lambda: open_source(srv.url), reconnect=Backoff(initial=0.05, maximum=0.1))
        with capture:
            assert capture.get(timeout=10) is not None
            srv.broken = True
            deadline = time.monotonic() + 10
            while "30 frames in a row do not decode as JPEG" not in caplog.text:
                assert time.monotonic() < deadline, "the undecodable frames went unnoticed"
                capture.get(timeout=0.2)
            srv.broken = False
            deadline = time.monotonic() + 10
            while capture.reconnects == 0:  # counted once a reopen succeeds
                assert time.monotonic() < deadline, "the camera was not reopened"
                capture.get(timeout=0.2)
            assert capture.get(timeout=10) is not None


def test_a_server_trickling_its_response_head_is_cut_at_the_timeout() -> None:
    # Each byte well within the read timeout; the head as a whole must be too.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        stop = threading.Event()

        def trickle() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                for byte in b"HTTP/1.0 200 OK\r\nX-Slow: " + b"a" * 100:
                    if stop.wait(0.2):
                        return
                    with contextlib.suppress(OSError):
                        conn.sendall(bytes([byte]))

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        started = time.monotonic()
        try:
            with pytest.raises(SourceError, match="took over 1 s to send its HTTP response head"):
                open_source(f"http://127.0.0.1:{listener.getsockname()[1]}/stream", timeout=1.0)
            assert time.monotonic() - started < 3.0
        finally:
            stop.set()
            thread.join(5)


def test_http_errors_are_one_line_source_errors(server: MjpegServer) -> None:
    with pytest.raises(SourceError, match="HTTP 404"):
        open_source(server.url_for("/nothing"))
    with pytest.raises(SourceError, match="HTTP 404"):  # sent percent-encoded, not a traceback
        open_source(server.url_for("/кам ера?name=\U0001f431"))
    with pytest.raises(SourceError, match="HTTP 302 Found; it points to /stream: give that URL"):
        open_source(server.url_for("/moved"))
    with pytest.raises(SourceError, match=r"HTTP 500 .*the camera's server failed; restart the camera"):
        open_source(server.url_for("/broken"))
    with pytest.raises(SourceError, match="not an MJPEG stream"):
        open_source(server.url_for("/snapshot.jpg"))
    with pytest.raises(SourceError, match="cannot connect") as err:
        open_source(f"http://127.0.0.1:{free_port()}/stream", timeout=1.0)
    assert "\n" not in str(err.value)


def test_http_stall_raises_after_the_timeout(server: MjpegServer) -> None:
    with open_source(server.url, timeout=0.5) as source:
        assert source.read() is not None
        server.paused = True
        with pytest.raises(SourceError, match=r"no (complete frame|data)"):
            for _ in range(100):
                source.read()


def test_http_close_wakes_a_blocked_read(server: MjpegServer) -> None:
    source = open_source(server.url, timeout=30.0)
    source.read()
    server.paused = True
    done = threading.Event()

    def reader() -> None:
        while source.read() is not None:
            pass
        done.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    time.sleep(0.2)
    source.close()
    assert done.wait(5), "read() stayed blocked after close()"


# -- RTSP, GStreamer, CSI -----------------------------------------------------------------------


def test_rtsp_unreachable_is_a_source_error() -> None:
    with pytest.raises(SourceError, match=r"cannot open rtsp://127\.0\.0\.1.*Connection refused"):
        open_source(f"rtsp://127.0.0.1:{free_port()}/live", timeout=2.0)


def wait_for_abandoned_opens(timeout: float = 35.0) -> None:
    """Wait out the opens a stop left behind (`open_stoppably`'s helper threads): an RTSP open
    holds FFmpeg's options variable while it runs, which a later source asking for another
    transport would wait for, and which would still be set when a test checks it is not."""
    for thread in threading.enumerate():
        if thread.name == "edge-source-open":
            thread.join(timeout)
            assert not thread.is_alive(), "an abandoned open did not end"


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_a_stop_cuts_short_an_open_the_camera_never_answers(scheme: str) -> None:
    """A real socket that accepts and stays silent: the open would wait out its 30 s timeout;
    with stoppable_opens, setting the event ends it at once, and the connection is dropped."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        stop = threading.Event()
        timer = threading.Timer(0.5, stop.set)
        timer.start()
        began = time.monotonic()
        with stoppable_opens(stop), pytest.raises(OpenInterrupted, match="a stop was requested"):
            open_source(f"{scheme}://127.0.0.1:{silent.getsockname()[1]}/live", timeout=30.0)
        assert time.monotonic() - began < 1.0
        if scheme == "http":  # FFmpeg's connect cannot be woken: it lets go at its timeout
            conn, _ = silent.accept()
            with conn:
                conn.settimeout(2.0)
                while conn.recv(4096):  # the request, then the end: the source hung up
                    pass
        else:  # hang up on FFmpeg, so the open it was left in ends now, not at its timeout
            conn, _ = silent.accept()
            conn.close()
        with stoppable_opens(stop), pytest.raises(OpenInterrupted):  # already stopped
            open_source(f"{scheme}://127.0.0.1:{silent.getsockname()[1]}/live")
    wait_for_abandoned_opens()


@pytest.mark.skipif(opencv_has_gstreamer(), reason="this OpenCV has GStreamer")
def test_gstreamer_without_support_names_the_fix() -> None:
    with pytest.raises(BackendUnavailable, match=r"without GStreamer.*apt install python3-opencv"):
        open_source("gst://videotestsrc ! videoconvert ! appsink")


def test_jetson_pipeline_string() -> None:
    assert nvargus_pipeline(1, (1920, 1080), 30.0, flip=2) == (
        "nvarguscamerasrc sensor-id=1 ! "
        "video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1,format=NV12 ! "
        "nvvidconv flip-method=2 ! video/x-raw,width=1920,height=1080,format=BGRx ! "
        "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"
    )
    assert "framerate=29970/1000" in nvargus_pipeline(0, (1280, 720), 29.97)
    with pytest.raises(ValueError):
        nvargus_pipeline(0, (1280, 720), 30.0, flip=9)


def test_jetson_detection(tmp_path: Path) -> None:
    # Fake filesystem roots: this machine is neither board.
    jetson = tmp_path / "jetson"
    (jetson / "etc").mkdir(parents=True)
    (jetson / "etc/nv_tegra_release").write_text("# R32 (release), REVISION: 7.1")
    orin = tmp_path / "orin"
    (orin / "proc/device-tree").mkdir(parents=True)
    (orin / "proc/device-tree/model").write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\0")
    pi = tmp_path / "pi"
    (pi / "proc/device-tree").mkdir(parents=True)
    (pi / "proc/device-tree/model").write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\0")
    assert is_jetson(str(jetson)) and is_jetson(str(orin))
    assert not is_jetson(str(pi)) and not is_jetson(str(tmp_path))


@pytest.mark.skipif(opencv_has_gstreamer(), reason="this OpenCV has GStreamer")
def test_csi_on_a_jetson_goes_through_gstreamer() -> None:
    with pytest.raises(BackendUnavailable, match="GStreamer"):
        CsiSource("csi://0", jetson=True)


def test_csi_uri_parsing() -> None:
    assert csi_number("csi://") == 0
    assert csi_number("csi://1") == 1
    with pytest.raises(ConfigError):
        csi_number("csi://-1")


class FakePicamera2:
    """Stands in for picamera2.Picamera2: no Raspberry Pi camera (nor libcamera) exists here.

    It has the real class's API as the adapter uses it: Picamera2(camera_num), the
    create_video_configuration(main={"size", "format"}, controls=...) / configure / start /
    capture_array(name) / stop / close life cycle, and global_camera_info(). Like libcamera's
    "RGB888", capture_array returns pixels stored B, G, R, here for a scene that is pure red,
    with the row padding a real buffer may carry, one frame per 1/FrameRate seconds.

    A stalled camera: instance number n's capture_array blocks for good after `hangs[n]`
    frames, as a real one does when its sensor or cable fails; `close` (from another thread)
    wakes it, which then raises, unless `deaf` (a driver that ignores the close too, until
    `release_all` at the end of the test).
    """

    cameras = 1
    instances: ClassVar[list[FakePicamera2]] = []
    hangs: ClassVar[dict[int, int]] = {}
    deaf = False

    def __init__(self, camera_num: int = 0, tuning: object = None) -> None:
        if camera_num >= self.cameras:
            raise IndexError("list index out of range")  # what picamera2 raises
        self.camera_num = camera_num
        self.calls: list[str] = []
        self.config: dict[str, Any] | None = None
        self.frames = 0
        self.hanging = threading.Event()
        self._wake = threading.Event()
        self._hang_after = self.hangs.get(len(FakePicamera2.instances))
        FakePicamera2.instances.append(self)

    @classmethod
    def release_all(cls) -> None:
        for camera in cls.instances:
            camera._wake.set()

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        return [{"Model": "imx708", "Num": n} for n in range(FakePicamera2.cameras)]

    def create_video_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = None,
        transform: object = None,
        colour_space: object = None,
        buffer_count: int = 6,
        controls: dict[str, Any] | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
    ) -> dict[str, Any]:
        self.calls.append("create_video_configuration")
        return {"main": dict(main or {}), "controls": dict(controls or {}), "buffer_count": buffer_count}

    def configure(self, camera_config: dict[str, Any]) -> None:
        self.calls.append("configure")
        self.config = camera_config

    def start(self, config: dict[str, Any] | None = None, show_preview: bool = False) -> None:
        self.calls.append("start")

    def capture_array(self, name: str = "main") -> np.ndarray:
        assert self.config is not None and "start" in self.calls
        if self._hang_after is not None and self.frames >= self._hang_after:
            self.hanging.set()
            self._wake.wait()
            raise RuntimeError("Camera frontend has timed out!")
        time.sleep(1.0 / self.config["controls"]["FrameRate"])
        self.frames += 1
        width, height = self.config["main"]["size"]
        assert self.config["main"]["format"] == "RGB888"
        stride = width + 16  # padded rows
        array = np.zeros((height, stride, 3), np.uint8)
        array[..., 2] = 255  # memory order B, G, R: this is red
        return array

    def stop(self) -> None:
        self.calls.append("stop")

    def close(self) -> None:
        self.calls.append("close")
        if not self.deaf:
            self._wake.set()


@pytest.fixture()
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakePicamera2]]:
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2  # type: ignore[attr-defined]  # a module made here
    monkeypatch.setitem(sys.modules, "picamera2", module)
    FakePicamera2.instances = []
    FakePicamera2.hangs = {}
    FakePicamera2.deaf = False
    yield FakePicamera2
    FakePicamera2.release_all()  # no capture thread stays stuck in a fake after its test


def test_picamera2_adapter(fake_picamera2: type[FakePicamera2]) -> None:
    with open_source("csi://0", size="640x480", fps=25, jetson=False) as source:
        assert (source.size, source.live) == ((640, 480), True)
        frames = [source.read() for _ in range(3)]
    camera = fake_picamera2.instances[0]
    assert camera.config == {
        "main": {"size": (640, 480), "format": "RGB888"},
        "controls": {"FrameRate": 25.0},
        "buffer_count": 6,
    }
    assert camera.calls == ["create_video_configuration", "configure", "start", "stop", "close"]
    frame = frames[-1]
    assert frame is not None and frame.source == "csi://0"
    assert_bgr(frame, (640, 480))
    # RGB888 is already BGR in memory: red stays red without any conversion.
    assert frame.image[0, 0].tolist() == [0, 0, 255]
    assert frame.image.flags["C_CONTIGUOUS"]
    assert [f.index for f in frames if f] == [0, 1, 2]


def test_picamera2_missing_camera(fake_picamera2: type[FakePicamera2]) -> None:
    with pytest.raises(SourceError, match="no Raspberry Pi camera at csi://1"):
        open_source("csi://1", jetson=False)


def test_picamera2_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails as if not installed
    with pytest.raises(BackendUnavailable, match="apt install python3-picamera2"):
        open_source("csi://0", jetson=False)


class FakeV4L2Capture:
    """Stands in for cv2.VideoCapture on a USB webcam: there is no /dev/video* here.

    It has the VideoCapture API the V4L2 source uses (isOpened, set, get, read, release) and
    behaves like OpenCV's V4L2 backend with an MJPG camera: frames come converted to BGR, or,
    after set(CAP_PROP_CONVERT_RGB, 0), as the camera's JPEG bytes in a 1 x N uint8 array. The
    JPEGs are real (photos, encoded by OpenCV) with their frame number stamped in.
    """

    jpeg_ok = True
    instances: ClassVar[list[FakeV4L2Capture]] = []

    def __init__(self, target: str, api: int) -> None:
        assert api == cv2.CAP_V4L2
        self.props = {
            cv2.CAP_PROP_FOURCC: float(cv2.VideoWriter.fourcc(*"YUYV")),
            cv2.CAP_PROP_FRAME_WIDTH: 640.0,
            cv2.CAP_PROP_FRAME_HEIGHT: 480.0,
            cv2.CAP_PROP_FPS: 30.0,
            cv2.CAP_PROP_CONVERT_RGB: 1.0,
        }
        self.sets: list[int] = []
        self.count = 0
        self.released = False
        FakeV4L2Capture.instances.append(self)

    def isOpened(self) -> bool:
        return True

    def set(self, prop: int, value: float) -> bool:
        self.sets.append(prop)
        self.props[prop] = float(value)
        return True

    def get(self, prop: int) -> float:
        return self.props.get(prop, 0.0)

    def read(self) -> tuple[bool, np.ndarray | None]:
        width, height = int(self.props[cv2.CAP_PROP_FRAME_WIDTH]), int(self.props[cv2.CAP_PROP_FRAME_HEIGHT])
        image = np.full((height, width, 3), 120, np.uint8)
        stamp_number(image, self.count)
        self.count += 1
        if self.props[cv2.CAP_PROP_CONVERT_RGB]:
            return True, image
        ok, jpeg = cv2.imencode(".jpg", image)
        assert ok
        data = jpeg.reshape(1, -1) if self.jpeg_ok else np.zeros((1, 500), np.uint8)
        return True, data

    def release(self) -> None:
        self.released = True


@pytest.fixture()
def fake_webcam(monkeypatch: pytest.MonkeyPatch) -> type[FakeV4L2Capture]:
    monkeypatch.setattr(cv2, "VideoCapture", FakeV4L2Capture)
    monkeypatch.setattr("edge_sdk.sources.v4l2.check_device", lambda device: None)
    FakeV4L2Capture.instances = []
    FakeV4L2Capture.jpeg_ok = True
    return FakeV4L2Capture


def test_usb_camera_sends_jpeg_packets(fake_webcam: type[FakeV4L2Capture]) -> None:
    with open_source("0", size="1280x720", fps=30, reduce=2) as source:
        assert isinstance(source, V4L2Source)
        cap = fake_webcam.instances[0]
        # The driver wants the pixel format before the size, and the size before the rate.
        assert cap.sets[:4] == [
            cv2.CAP_PROP_FOURCC, cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_FPS
        ]
        assert uses_packets(source) and source.live
        assert (source.full_size, source.size, source.fps) == ((1280, 720), (640, 360), 30.0)
        frames = read_all(source, limit=3)
    assert [read_number(f.image) for f in frames] == [0, 1, 2]
    assert_bgr(frames[0], (640, 360))
    assert cap.released


def test_usb_camera_falls_back_when_its_jpegs_do_not_decode(
    fake_webcam: type[FakeV4L2Capture],
) -> None:
    fake_webcam.jpeg_ok = False
    with open_source("v4l2:///dev/video0", reduce=2) as source:
        assert isinstance(source, V4L2Source)
        assert not uses_packets(source)
        assert (source.size, source.reduce) == ((640, 480), 1)
        frame = source.read()
    assert frame is not None and frame.image.shape == (480, 640, 3)


def test_the_camera_gets_the_size_rate_and_format_asked_for_on_the_command_line(
    fake_webcam: type[FakeV4L2Capture], model_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from edge_sdk.cli.main import cli

    monkeypatch.setenv("EDGE_SDK_HOME", str(model_home))
    result = CliRunner().invoke(cli, [
        "--camera", "--source-option", "size=320x240", "--source-option", "fps=15",
        "--source-option", "fourcc=YUYV", "--no-display", "--json", "--max-frames", "2",
    ])
    assert result.exit_code == 0, result.output
    assert len([line for line in result.stdout.splitlines() if line.startswith("{")]) == 2
    cap = fake_webcam.instances[0]
    assert cap.get(cv2.CAP_PROP_FOURCC) == float(cv2.VideoWriter.fourcc(*"YUYV"))
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (320, 240)
    assert cap.get(cv2.CAP_PROP_FPS) == 15


# -- a camera whose read blocks forever ---------------------------------------------------------


def stalled_camera_capture(stall: float) -> Capture:
    return Capture(lambda: open_source("csi://0", size="64x48", fps=50, jetson=False),
                   reconnect=Backoff(initial=0.05, maximum=0.1), stall=stall)


def frames_after(capture: Capture, count: int, timeout: float) -> list[Frame]:
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout
    while len(frames) < count and time.monotonic() < deadline and not capture.finished:
        frame = capture.get(timeout=0.2)
        if frame is not None:
            frames.append(frame)
    return frames


def test_a_blocked_camera_read_is_a_stall_that_reconnects(
    fake_picamera2: type[FakePicamera2], caplog: pytest.LogCaptureFixture
) -> None:
    """picamera2's capture_array has no timeout: the watchdog closes the camera after `stall`
    seconds, which wakes the read, and the capture thread reopens it."""
    caplog.set_level(logging.INFO, logger="edge_sdk.capture")
    fake_picamera2.hangs = {0: 3}
    with stalled_camera_capture(0.3) as capture:
        before = frames_after(capture, 3, 5)
        assert fake_picamera2.instances[0].hanging.wait(5)
        hung = time.monotonic()
        after = frames_after(capture, 3, 5)
        resumed = time.monotonic() - hung
    assert len(before) == 3 and len(after) == 3
    assert 0.3 <= resumed < 3.0
    assert capture.reconnects == 1 and len(fake_picamera2.instances) == 2
    assert "close" in fake_picamera2.instances[0].calls
    assert isinstance(capture.error, SourceError) and "no frame for 0.3 s" in str(capture.error)
    indices = [f.index for f in before + after]
    assert indices == sorted(set(indices)), "indices keep increasing across the reopening"
    assert "delivered no frame" in caplog.text and "reconnected to csi://0" in caplog.text


def test_a_read_that_ignores_the_close_is_left_behind(
    fake_picamera2: type[FakePicamera2], caplog: pytest.LogCaptureFixture
) -> None:
    fake_picamera2.hangs = {0: 2}
    fake_picamera2.deaf = True
    with stalled_camera_capture(0.3) as capture:
        frames_after(capture, 2, 5)
        assert fake_picamera2.instances[0].hanging.wait(5)
        after = frames_after(capture, 3, 5)
        stuck = [t for t in threading.enumerate() if t.name == "edge-capture"]
    assert len(after) == 3 and capture.reconnects == 1
    assert len(stuck) == 2  # the stuck one, left behind, and the one that took over
    assert "did not return after closing it" in caplog.text
    fake_picamera2.release_all()  # the driver finally returns: the old thread just leaves
    for thread in stuck:
        thread.join(2)
    assert not any(t.is_alive() for t in stuck)


def test_stop_does_not_wait_for_a_read_blocked_in_the_driver(
    fake_picamera2: type[FakePicamera2], caplog: pytest.LogCaptureFixture
) -> None:
    """A live read that ignores the close (as FFmpeg's RTSP read does until its timeout):
    stop() leaves it behind after 0.5 s instead of waiting out its 2 s join."""
    caplog.set_level(logging.INFO, logger="edge_sdk.capture")
    fake_picamera2.hangs = {0: 1}
    fake_picamera2.deaf = True
    capture = Capture(open_source("csi://0", size="64x48", fps=50, jetson=False)).start()
    assert fake_picamera2.instances[0].hanging.wait(5)
    began = time.monotonic()
    capture.stop()
    assert time.monotonic() - began < 1.0
    assert capture.get() is None and capture.finished
    assert "left the capture thread in a blocked read" in caplog.text


def test_a_stall_without_reconnect_ends_the_capture(fake_picamera2: type[FakePicamera2]) -> None:
    fake_picamera2.hangs = {0: 1}
    source = open_source("csi://0", size="64x48", fps=50, jetson=False)
    with Capture(source, stall=0.2) as capture:
        frames = frames_after(capture, 5, 5)
    assert len(frames) == 1 and capture.ended and capture.finished
    assert isinstance(capture.error, SourceError)
    with pytest.raises(ValueError, match="stall"):
        Capture(source, stall=0)


# -- a real RTSP camera (GStreamer's RTSP server, see support/rtsp_server.py) -------------------


@pytest.fixture()
def rtsp_server_installed() -> None:
    """Skip when the system packages of the RTSP server are missing (scripts/setup.sh has them)."""
    reason = rtsp_server_missing()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture()
def no_ffmpeg_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(OPTIONS_VAR, raising=False)


@pytest.mark.parametrize("codec", ["h264", "mjpeg"])
@pytest.mark.usefixtures("rtsp_server_installed", "no_ffmpeg_options")
def test_rtsp_stream_frames_are_bgr_and_numbered(codec: str) -> None:
    server = RtspServer(codec=codec, size=(320, 240), fps=30)
    with server, open_source(server.url, timeout=3.0) as source:
        assert source.live and source.fps == 30.0
        assert source.size in ((320, 240), (0, 0))  # FFmpeg may know it only from a frame
        frames = read_all(source, limit=15)
        due = server.frame_due()
        assert source.size == (320, 240)
    assert len(frames) == 15
    for frame in frames:
        assert_bgr(frame, (320, 240))
    assert [f.index for f in frames] == list(range(15))
    stamps = [read_number(f.image) for f in frames]
    assert None not in stamps, f"unreadable stamps: {stamps}"
    numbers = cast(list[int], stamps)  # every stamp was read: checked above
    assert numbers == sorted(set(numbers)), f"stamped numbers do not increase: {numbers}"
    # A live stream, joined when the source opened: no frame from long before that.
    assert due - 60 < numbers[0] <= due


@pytest.mark.usefixtures("rtsp_server_installed", "no_ffmpeg_options")
def test_rtsp_stream_ends_when_the_server_goes_away() -> None:
    """Killing the server closes the connection: read() returns None (Capture then reconnects)
    well before the read timeout, which would only catch a silent stall."""
    with RtspServer(codec="mjpeg") as server, open_source(server.url, timeout=3.0) as source:
        assert source.read() is not None
        server.stop()
        lost = time.monotonic()
        read_all(source, limit=200)  # whatever was already on the way, then the end
        assert time.monotonic() - lost < 3.5


@pytest.mark.usefixtures("rtsp_server_installed", "no_ffmpeg_options")
def test_a_frozen_rtsp_camera_is_a_failure_not_a_stale_frame() -> None:
    """The server process frozen (SIGSTOP): FFmpeg's read gives up at the timeout and hands out
    a frame it had buffered, seconds old. That must end the read, for Capture to reconnect."""
    server = RtspServer(codec="h264", size=(160, 120), fps=10)
    with server, open_source(server.url, timeout=1.0) as source:
        assert source.read() is not None
        proc = server._proc  # the test freezes the camera's own process
        assert proc is not None
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            frozen = time.monotonic()
            ended = False
            while not ended and time.monotonic() - frozen < 10:
                started = time.monotonic()
                try:  # what was on the way before the freeze, then the stall
                    frame = source.read()
                except SourceError as exc:
                    assert "no fresh frame from" in str(exc) and "for 1 s" in str(exc)
                    ended = True
                else:
                    assert frame is None or time.monotonic() - started < 1.0, "a stale frame"
                    ended = frame is None
            assert ended and time.monotonic() - frozen < 3.0
        finally:
            os.kill(proc.pid, signal.SIGCONT)


@pytest.mark.usefixtures("rtsp_server_installed", "no_ffmpeg_options")
def test_rtsp_transport_is_chosen_per_source() -> None:
    """Each source gets the transport it asks for, also after a source that asked for another
    (the options variable was once set for the first and kept), and the variable is put back."""
    wait_for_abandoned_opens()  # an earlier test's, stopped mid-open, may still hold the variable
    with RtspServer(protocols="tcp", codec="mjpeg") as tcp_only, \
            RtspServer(protocols="udp", codec="mjpeg") as udp_only:  # fmt: skip
        for server, transport in [(tcp_only, "tcp"), (udp_only, "udp"), (tcp_only, "tcp")]:
            with open_source(server.url, transport=transport, timeout=3.0) as source:
                frame = source.read()
                assert frame is not None and read_number(frame.image) is not None
        assert OPTIONS_VAR not in os.environ
        # The server refuses the other transport: proof that the one asked for was used.
        for server, transport in [(tcp_only, "udp"), (udp_only, "tcp")]:
            with pytest.raises(SourceError, match=r"cannot open rtsp://127\.0\.0\.1"):
                open_source(server.url, transport=transport, timeout=3.0)


@pytest.mark.usefixtures("rtsp_server_installed")
def test_rtsp_transport_in_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(OPTIONS_VAR, "rtsp_transport;udp|max_delay;500000")
    udp_only = RtspServer(protocols="udp", codec="mjpeg")
    with udp_only, open_source(udp_only.url, timeout=3.0) as source:  # transport="tcp" by default
        assert source.read() is not None
    assert os.environ[OPTIONS_VAR] == "rtsp_transport;udp|max_delay;500000"


def test_ffmpeg_options_keep_the_users_and_add_the_transport() -> None:
    assert ffmpeg_options(None, "udp") == "rtsp_transport;udp"
    assert ffmpeg_options("", "tcp") == "rtsp_transport;tcp"
    assert ffmpeg_options("stimeout;2000000", "tcp") == "stimeout;2000000|rtsp_transport;tcp"
    assert ffmpeg_options("rtsp_transport;udp|x;1", "tcp") == "rtsp_transport;udp|x;1"


def test_rtsp_opens_with_different_transports_do_not_overlap(
    monkeypatch: pytest.MonkeyPatch, no_ffmpeg_options: None
) -> None:
    """The variable is process-wide: while one source opens with tcp, one that wants udp waits
    for it instead of changing the value under it; two tcp opens run together."""
    seen: list[tuple[str, str | None]] = []
    gate = threading.Event()

    def fake_open(target: str | int, api: int, what: str, params: Any = ()) -> Any:
        seen.append((str(target), os.environ.get(OPTIONS_VAR)))
        if "slow" in str(target):
            assert gate.wait(5)
        raise SourceError(what)

    monkeypatch.setattr("edge_sdk.sources.rtsp.RtspSource.open_capture", staticmethod(fake_open))

    def open_in_thread(uri: str, transport: str) -> threading.Thread:
        def run() -> None:
            with contextlib.suppress(SourceError):
                open_source(uri, transport=transport)

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    slow = open_in_thread("rtsp://cam/slow", "tcp")
    while not seen:
        time.sleep(0.01)
    udp = open_in_thread("rtsp://cam/udp", "udp")
    time.sleep(0.2)
    assert seen == [("rtsp://cam/slow", "rtsp_transport;tcp")], "the udp open did not wait"
    tcp = open_in_thread("rtsp://cam/tcp", "tcp")
    tcp.join(5)
    assert ("rtsp://cam/tcp", "rtsp_transport;tcp") in seen  # same value: no waiting
    gate.set()
    for thread in (slow, udp):
        thread.join(5)
    assert seen[-1] == ("rtsp://cam/udp", "rtsp_transport;udp")
    assert OPTIONS_VAR not in os.environ
