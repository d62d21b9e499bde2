"""A real MJPEG-over-HTTP camera for tests and benchmarks, on a free loopback port.

It serves ``multipart/x-mixed-replace`` JPEG frames at a set rate, the way IP cameras and
mjpg-streamer do. Frame n is due at start + n/fps (the numbering follows the clock, like a
sensor, and continues across `stop`/`start`); its number is stamped into its pixels
(edge_sdk.sources.synthetic.read_number reads it back, also after reduced decoding) and the
moment it was written to the socket is kept in `sent_ns[n]` (time.monotonic_ns, comparable with
Frame.timestamp_ns in the same process). `stop()` drops every client and closes the port;
`start()` serves again on the same port, for reconnect tests.

Paths: ``/stream`` (MJPEG), ``/snapshot.jpg`` (one JPEG: not a stream), anything else 404.
With `auth` set, requests without that Basic login get 401.

Import: in tests ``from support.mjpeg_server import MjpegServer``; from scripts, put tests/ on
sys.path first (see support/media.py).
"""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_sdk.sources.synthetic import stamp_number

FrameMaker = Callable[[int], np.ndarray]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def gradient_frames(size: tuple[int, int]) -> FrameMaker:
    """A cheap frame maker: a fixed colour gradient (the server stamps the number on it)."""
    width, height = size
    base = np.zeros((height, width, 3), np.uint8)
    base[..., 0] = np.linspace(0, 255, width, dtype=np.float32).astype(np.uint8)
    base[..., 1] = np.linspace(0, 255, height, dtype=np.float32)[:, None].astype(np.uint8)
    base[..., 2] = 90
    return lambda n: base.copy()


def photo_frame_maker(size: tuple[int, int], photos: int = 10) -> FrameMaker:
    """Frames cycling through real photos (see support.media), numbers stamped by the server."""
    from support.media import photo_frames

    pictures = list(photo_frames(size, photos, photos=photos, stamp=False))
    return lambda n: pictures[n % len(pictures)].copy()


class MjpegServer:
    """An MJPEG camera on 127.0.0.1.

    Args:
        fps: Frames per second sent to each client.
        size: (width, height) of the frames.
        frames: Makes frame n as BGR (default: a gradient); the server stamps n on a copy.
        quality: JPEG quality.
        port: Port to listen on; 0 picks a free one (kept across restarts).
        content_length: Send a Content-Length with each part (some cameras do not).
        boundary: The multipart boundary string.
        auth: (user, password) the stream requires, or None.
        tls: (certificate file, key file) to serve HTTPS with (a camera's self-signed one),
            or None for plain HTTP.
    """

    def __init__(
        self,
        *,
        fps: float = 30.0,
        size: tuple[int, int] = (640, 480),
        frames: FrameMaker | None = None,
        quality: int = 80,
        port: int = 0,
        content_length: bool = True,
        boundary: str = "edgeframe",
        auth: tuple[str, str] | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.fps = fps
        self.size = size
        self.quality = quality
        self.port = port or free_port()
        self.content_length = content_length
        self.boundary = boundary
        self.auth = auth
        self.tls = tls
        self.paused = False
        self.sent_ns: dict[int, int] = {}
        self.frames_sent = 0
        self._make = frames or gradient_frames(size)
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._epoch = time.monotonic()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._clients: set[socket.socket] = set()
        self._running = threading.Event()

    @property
    def url(self) -> str:
        """The stream's URI."""
        return self.url_for("/stream")

    def url_for(self, path: str) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    # -- frames -------------------------------------------------------------------------------

    def jpeg(self, n: int) -> bytes:
        """Frame n, stamped and JPEG-encoded (cached, so clients share the work)."""
        with self._lock:
            cached = self._cache.get(n)
        if cached is not None:
            return cached
        image = self._make(n)
        stamp_number(image, n)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        assert ok
        data = buf.tobytes()
        with self._lock:
            self._cache[n] = data
            while len(self._cache) > 8:
                self._cache.popitem(last=False)
        return data

    def frame_due(self, now: float | None = None) -> int:
        """Number of the newest frame due at `now` (monotonic seconds)."""
        return int(((time.monotonic() if now is None else now) - self._epoch) * self.fps)

    def _record(self, n: int) -> None:
        with self._lock:
            self.sent_ns.setdefault(n, time.monotonic_ns())
            self.frames_sent += 1
            if len(self.sent_ns) > 20000:
                for key in sorted(self.sent_ns)[:10000]:
                    del self.sent_ns[key]

    def _stream(self) -> Iterator[int]:
        """Frame numbers to send, each yielded when due; stops when the server stops."""
        n = self.frame_due()
        while self._running.is_set():
            due = self._epoch + n / self.fps
            delay = due - time.monotonic()
            if delay > 0 and not _sleep_unless(self._running, delay):
                return
            if not self._running.is_set():
                return
            if self.paused:
                n = self.frame_due() + 1
                continue
            yield n
            # A client that fell behind skips to the newest due frame, as a camera would.
            n = max(n + 1, self.frame_due())

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> MjpegServer:
        """Listen (again) on `port` and serve clients in threads."""
        if self._server is not None:
            return self
        handler = _handler_for(self)
        server = None
        for _ in range(50):  # the port may linger briefly after a stop
            try:
                server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
                break
            except OSError:
                time.sleep(0.05)
        if server is None:
            raise RuntimeError(f"cannot listen on 127.0.0.1:{self.port}")
        server.daemon_threads = True
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._running.set()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port and drop every connected client (they see the stream end)."""
        server, self._server = self._server, None
        self._running.clear()
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            clients = list(self._clients)
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> MjpegServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _sleep_unless(running: threading.Event, delay: float) -> bool:
    """Sleep `delay` s; False if the server stopped meanwhile (an Event that is *set* while
    running cannot be waited on for its clearing, so this polls in short steps)."""
    end = time.monotonic() + delay
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))
        if not running.is_set():
            return False
    return True


def _handler_for(server: MjpegServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

        def _authorized(self) -> bool:
            if server.auth is None:
                return True
            expected = base64.b64encode(":".join(server.auth).encode()).decode()
            if self.headers.get("Authorization") == f"Basic {expected}":
                return True
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="camera"')
            self.end_headers()
            return False

        def do_GET(self) -> None:
            if not self._authorized():
                return
            if self.path == "/snapshot.jpg":
                data = server.jpeg(server.frame_due())
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if self.path == "/moved":  # where some cameras send a client to their stream
                self.send_response(302)
                self.send_header("Location", "/stream")
                self.end_headers()
                return
            if self.path == "/broken":  # a camera whose web server failed
                self.send_error(500)
                return
            if self.path != "/stream":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Cache-Control", "no-cache")
            self.send_header(
                "Content-Type", f"multipart/x-mixed-replace; boundary={server.boundary}"
            )
            self.end_headers()
            sock = self.connection
            with server._lock:
                server._clients.add(sock)
            try:
                for n in server._stream():
                    data = server.jpeg(n)
                    head = f"--{server.boundary}\r\nContent-Type: image/jpeg\r\n"
                    if server.content_length:
                        head += f"Content-Length: {len(data)}\r\n"
                    server._record(n)
                    self.wfile.write(head.encode() + b"\r\n" + data + b"\r\n")
                    self.wfile.flush()
            except OSError:
                pass  # the client went away, or stop() cut it off
            finally:
                with server._lock:
                    server._clients.discard(sock)

    return Handler
