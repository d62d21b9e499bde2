"""A real RTSP camera for tests, on a free loopback port: GStreamer's RTSP server in a subprocess.

The server is gst-rtsp-server (Debian: gir1.2-gst-rtsp-server-1.0 and the GStreamer plugins, see
scripts/setup.sh) driven through GObject introspection. The venv has no `gi`, so this same file is
run as a script by the system interpreter (/usr/bin/python3), and `RtspServer`, in the test
process, feeds it raw BGR frames on its stdin. The subprocess encodes them (H.264 with x264, or
JPEG) and serves them at ``rtsp://127.0.0.1:PORT/live`` to every client, as one shared live
stream: a client joining late gets the current frames, not the stream's beginning.

Frame n is due at start + n/fps (the numbering follows the clock, like a sensor, and continues
across `stop`/`start`); its number is stamped into its pixels (edge_sdk.sources.synthetic.
read_number reads it back after H.264 or JPEG coding). Frames due while no client watches are
thrown away by the server. `stop()` kills the server, which drops every client (they see the
connection close); `start()` serves again on the same port, for reconnect tests.

Import: in tests ``from support.rtsp_server import RtspServer, missing``; call `missing()` first
and skip with its reason when the packages are not installed.
"""

# Only the standard library at module level: the server side runs under the system python3,
# which has neither numpy nor OpenCV nor edge_sdk. The test side imports those where it uses them.
from __future__ import annotations

import argparse
import contextlib
import functools
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    FrameMaker = Callable[[int], np.ndarray]

#: The interpreter that has python3-gi (the venv's has not).
SYSTEM_PYTHON = "/usr/bin/python3"
#: GStreamer elements the server needs, and the Debian package of each (for the skip reason).
ELEMENTS = {
    "appsrc": "gstreamer1.0-plugins-base",
    "videoconvert": "gstreamer1.0-plugins-base",
    "x264enc": "gstreamer1.0-plugins-ugly",
    "rtph264pay": "gstreamer1.0-plugins-good",
    "jpegenc": "gstreamer1.0-plugins-good",
    "rtpjpegpay": "gstreamer1.0-plugins-good",
}
CODECS = ("h264", "mjpeg")
PROTOCOLS = ("tcp", "udp", "any")
_PACKAGES = "python3-gi gir1.2-gst-rtsp-server-1.0 " + " ".join(sorted(set(ELEMENTS.values())))


@functools.cache
def missing() -> str | None:
    """Why no RTSP server can run here (a skip reason naming the packages), or None if one can."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"no {SYSTEM_PYTHON} for the GStreamer RTSP server"
    try:
        result = subprocess.run(
            [SYSTEM_PYTHON, __file__, "--check"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return "the GStreamer RTSP server check timed out"
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["?"])[-1]
        return f"no GStreamer RTSP server ({last}); apt-get install {_PACKAGES}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RtspServer:
    """An RTSP camera on 127.0.0.1, serving ``/live``.

    Args:
        fps: Frames per second.
        size: (width, height) of the frames.
        codec: "h264" (x264, a key frame every `keyframe_s`: what most cameras send) or "mjpeg".
        frames: Makes frame n as BGR (default: a gradient); the server stamps n on a copy.
        port: Port to listen on; 0 picks a free one (kept across restarts).
        protocols: Lower transports the server accepts: "tcp" (interleaved in the RTSP
            connection), "udp", or "any".
        keyframe_s: Seconds between H.264 key frames: a client joining (or rejoining) the stream
            decodes nothing before the next one.
    """

    def __init__(
        self,
        *,
        fps: float = 30.0,
        size: tuple[int, int] = (320, 240),
        codec: str = "h264",
        frames: FrameMaker | None = None,
        port: int = 0,
        protocols: str = "any",
        keyframe_s: float = 0.5,
    ) -> None:
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, not {codec!r}")
        if protocols not in PROTOCOLS:
            raise ValueError(f"protocols must be one of {PROTOCOLS}, not {protocols!r}")
        self.fps = fps
        self.size = size
        self.codec = codec
        self.protocols = protocols
        self.keyframe_s = keyframe_s
        self.port = port or _free_port()
        self.frames_fed = 0
        self._make = frames
        self._epoch = time.monotonic()
        self._proc: subprocess.Popen[bytes] | None = None
        self._feeder: threading.Thread | None = None
        self._running = threading.Event()

    @property
    def url(self) -> str:
        """The stream's URI."""
        return f"rtsp://127.0.0.1:{self.port}/live"

    def frame_due(self, now: float | None = None) -> int:
        """Number of the newest frame due at `now` (monotonic seconds)."""
        return int(((time.monotonic() if now is None else now) - self._epoch) * self.fps)

    # -- life cycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> RtspServer:
        """Start the server (again) on `port` and return once it has served a first client.

        Raises:
            RuntimeError: it did not come up and serve within `timeout` seconds (with its
                stderr, or what it failed).
        """
        if self._proc is not None:
            return self
        deadline = time.monotonic() + timeout
        while True:
            problem = self._try_start(deadline)
            if problem is None:
                return self
            if time.monotonic() >= deadline:
                raise RuntimeError(f"RTSP server did not start on port {self.port}: {problem}")
            time.sleep(0.1)

    def _try_start(self, deadline: float) -> str | None:
        """Spawn the server and watch it once; None when it serves, else why not."""
        proc = self._spawn()
        if not _wait_until_listening(proc, self.port, deadline):
            # The previous server's port can linger for a moment after a stop: try again.
            return _kill(proc) or "not listening"
        self._proc = proc
        self._running.set()
        self._feeder = threading.Thread(
            target=self._feed, args=(proc,), name="rtsp-server-feed", daemon=True
        )
        self._feeder.start()
        # A fresh gst-rtsp-server now and then sends its first client no data at all (measured
        # here: once in 210 fresh servers, and once in 20-50 with two busy loops on the 2
        # cores), never in 120 clients of one that had served. So a first client is served
        # here, and a server that fails it is replaced (then 0 of 150 under the busy loops).
        if self._serves_a_frame():
            return None
        self.stop()
        return "its first client got no frame"

    def _serves_a_frame(self) -> bool:
        from edge_sdk.errors import EdgeSDKError
        from edge_sdk.sources.rtsp import RtspSource

        try:
            with RtspSource(self.url, timeout=3.0,
                            transport="udp" if self.protocols == "udp" else "tcp") as source:
                return source.read() is not None
        except EdgeSDKError:
            return False

    def stop(self) -> None:
        """Kill the server: every client's connection closes, the port is free again."""
        proc, self._proc = self._proc, None
        self._running.clear()
        if proc is None:
            return
        _kill(proc)
        if self._feeder is not None:
            self._feeder.join(5)
            self._feeder = None

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self) -> subprocess.Popen[bytes]:
        width, height = self.size
        command = [
            SYSTEM_PYTHON, __file__, "--port", str(self.port), "--size", f"{width}x{height}",
            "--fps", str(self.fps), "--codec", self.codec, "--protocols", self.protocols,
            "--keyframe", str(max(1, round(self.keyframe_s * self.fps))),
        ]  # fmt: skip
        return subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def _feed(self, proc: subprocess.Popen[bytes]) -> None:
        """Write each frame to the server when it is due, until the server stops."""
        from edge_sdk.sources.synthetic import stamp_number

        make = self._make or _gradient(self.size)
        assert proc.stdin is not None
        n = self.frame_due()
        while self._running.is_set():
            delay = self._epoch + n / self.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            image = make(n)
            stamp_number(image, n)
            try:
                proc.stdin.write(image.tobytes())
                proc.stdin.flush()
            except (OSError, ValueError):
                return  # the server was killed (ValueError: its stdin is already closed)
            self.frames_fed += 1
            # Fell behind (a busy machine): skip to the newest due frame, as a camera would.
            n = max(n + 1, self.frame_due())


def _gradient(size: tuple[int, int]) -> FrameMaker:
    import numpy as np

    width, height = size
    base = np.zeros((height, width, 3), np.uint8)
    base[..., 0] = np.linspace(0, 255, width, dtype=np.float32).astype(np.uint8)
    base[..., 1] = np.linspace(0, 255, height, dtype=np.float32)[:, None].astype(np.uint8)
    base[..., 2] = 90
    return lambda n: base.copy()


def _wait_until_listening(proc: subprocess.Popen[bytes], port: int, deadline: float) -> bool:
    """True once `port` accepts a connection; False if `proc` exits first or time runs out."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.02)
    return False


def _kill(proc: subprocess.Popen[bytes]) -> str:
    """Kill the server now (no goodbye to its clients, like a camera losing power); its stderr."""
    proc.kill()
    # Not communicate(): it would flush stdin, which the feeder thread may be writing to.
    with contextlib.suppress(OSError, ValueError):
        if proc.stdin is not None:
            proc.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    err = proc.stderr.read() if proc.stderr is not None else b""
    if proc.stderr is not None:
        proc.stderr.close()
    return err.decode(errors="replace").strip()


# -- the server side: runs under /usr/bin/python3 with python3-gi ------------------------------


def _launch_line(args: argparse.Namespace) -> str:
    width, height = (int(v) for v in args.size.split("x"))
    rate = Fraction(args.fps).limit_denominator(1001)
    # is-live + do-timestamp: buffers get the running time when pushed, so the payloader sends
    # them as they come. leaky-type=downstream with 2 buffers: a slow encoder drops old frames
    # instead of blocking the feeder.
    src = (
        "appsrc name=src is-live=true do-timestamp=true format=time max-buffers=2 "
        f"leaky-type=downstream caps=video/x-raw,format=BGR,width={width},height={height},"
        f"framerate={rate.numerator}/{rate.denominator} ! videoconvert ! video/x-raw,format=I420"
    )
    if args.codec == "h264":
        # zerolatency: no frame reordering or lookahead. But not its sliced threads: with them the
        # top slice of every P frame comes out of RTSP + FFmpeg decoded wrong (the stamp is
        # unreadable on all but the key frames). config-interval=-1 repeats SPS/PPS with every
        # key frame, so a client that joins late can start decoding at the next one.
        encode = (
            "x264enc tune=zerolatency sliced-threads=false speed-preset=ultrafast "
            f"key-int-max={args.keyframe} "
            "! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=-1"
        )
    else:
        encode = "jpegenc quality=85 ! rtpjpegpay name=pay0 pt=26"
    return f"( {src} ! {encode} )"


def _check() -> None:
    """Exit 0 if everything the server needs is installed, else raise naming what is not."""
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import Gst, GstRtspServer  # noqa: F401

    Gst.init(None)
    absent = [f"{e} ({p})" for e, p in ELEMENTS.items() if Gst.ElementFactory.find(e) is None]
    if absent:
        raise SystemExit(f"missing GStreamer elements: {', '.join(absent)}")


def _serve(args: argparse.Namespace) -> None:
    """Serve frames read from stdin until killed."""
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtsp", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtsp, GstRtspServer

    Gst.init(None)
    width, height = (int(v) for v in args.size.split("x"))
    frame_bytes = width * height * 3
    sources: set[Any] = set()
    latest: list[bytes] = []  # the newest frame read, once there is one
    lock = threading.Lock()

    def configured(factory: Any, media: Any) -> None:
        src = media.get_element().get_by_name_recurse_up("src")
        with lock:
            sources.add(src)
            first = latest[-1] if latest else None
        # Hand the new pipeline a frame at once, before it prepares. When its first buffer came
        # only after the media was prepared and playing, rtsp-server sometimes never let any
        # data through (about 1 session in 40: the appsrc queue filled, the client timed out).
        if first is not None:
            src.emit("push-buffer", Gst.Buffer.new_wrapped(first))

        def unprepared(media: Any) -> None:
            with lock:
                sources.discard(src)

        media.connect("unprepared", unprepared)

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(_launch_line(args))
    # One pipeline for every client, as a camera has one sensor: a new client joins the running
    # stream instead of starting its own from frame 0.
    factory.set_shared(True)
    lower = GstRtsp.RTSPLowerTrans
    factory.set_protocols(
        {"tcp": lower.TCP, "udp": lower.UDP, "any": lower.TCP | lower.UDP}[args.protocols]
    )
    factory.connect("media-configure", configured)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    server.get_mount_points().add_factory("/live", factory)
    if server.attach(None) == 0:
        raise SystemExit(f"cannot listen on 127.0.0.1:{args.port}")

    def feed(stdin: IO[bytes]) -> None:
        while len(data := stdin.read(frame_bytes)) == frame_bytes:
            with lock:
                latest[:] = [data]
                targets = list(sources)
            for src in targets:  # none while no client watches: the frame is dropped
                src.emit("push-buffer", Gst.Buffer.new_wrapped(data))
        loop.quit()  # stdin closed: the test side is gone

    loop = GLib.MainLoop()
    threading.Thread(target=feed, args=(sys.stdin.buffer,), daemon=True).start()
    loop.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only check the packages")
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--codec", choices=CODECS, default="h264")
    parser.add_argument("--protocols", choices=PROTOCOLS, default="any")
    parser.add_argument("--keyframe", type=int, default=15, help="frames between key frames")
    args = parser.parse_args()
    if args.check:
        _check()
    else:
        _serve(args)


if __name__ == "__main__":
    main()
