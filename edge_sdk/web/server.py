"""The HTTP server of the web view: routes, token check, MJPEG and server-sent-event streams.

Built on the standard library's `ThreadingHTTPServer`: one thread per connection is plenty for
the handful of people who watch a camera board, a multipart MJPEG response or an event stream is
a plain loop writing to a socket, and the SDK gains no dependency (see docs/web.md).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import select
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from edge_sdk.errors import SinkError
from edge_sdk.web.access import AccessPolicy, BindAddress
from edge_sdk.web.latest import LatestValue

log = logging.getLogger(__name__)

BOUNDARY = "edgesdkframe"
#: How often a waiting stream wakes to notice shutdown; bounds how long close() takes.
_WAKE_S = 0.25
#: A comment line on idle event streams, so proxies keep them open and dead clients are noticed.
_KEEPALIVE_S = 15.0
#: Connections served at once beyond the streams (page, API, metrics, probes). Each holds a
#: thread for up to `_Handler.timeout` while it sends its request; past the cap a connection
#: gets an immediate 503, so a flood of slow clients cannot pile up threads on the board.
_EXTRA_CONNECTIONS = 32
_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
         b"Content-Length: 5\r\nConnection: close\r\n\r\nbusy\n")


class ViewContent(Protocol):
    """What the server shows; the web sink provides it."""

    policy: AccessPolicy
    #: Newest JPEG of the annotated frame; its readers are the MJPEG viewers.
    jpegs: LatestValue[bytes]
    #: Newest prediction as UTF-8 JSON (Prediction.to_dict plus rates).
    predictions: LatestValue[bytes]

    def page(self) -> bytes: ...

    def metrics(self) -> tuple[bytes, str]: ...

    def health(self) -> dict[str, Any]: ...


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    content: ViewContent
    max_streams: int
    streams: threading.Semaphore
    #: Every connection being served, streams included (see `_EXTRA_CONNECTIONS`).
    connections: threading.Semaphore
    #: Connections of the open streams, so close() can cut one stuck in a blocked write.
    open_streams: set[socket.socket]
    open_lock: threading.Lock

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.connections.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(_BUSY)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.connections.release()  # no thread was started to release it
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release()


class _Server6(_Server):
    address_family = socket.AF_INET6


class WebServer:
    """Serves a `ViewContent` on one address from a background thread.

    Args:
        bind: Where to listen (port 0 picks a free port; see `address`).
        content: What to serve.
        max_streams: Most MJPEG and event streams open at once; more get 503, so a crowd of
            viewers cannot exhaust the board's threads.

    Raises:
        SinkError: the address is in use, not this machine's, or not allowed.
    """

    def __init__(self, bind: BindAddress, content: ViewContent, *, max_streams: int = 16) -> None:
        if max_streams < 1:
            raise ValueError(f"max_streams must be >= 1, got {max_streams}")
        cls = _Server6 if bind.is_ipv6 else _Server
        try:
            self._server = cls((bind.host, bind.port), _Handler)
        except OSError as exc:
            raise SinkError(_bind_error(bind, exc)) from None
        self._server.content = content
        self._server.max_streams = max_streams
        self._server.streams = threading.BoundedSemaphore(max_streams)
        self._server.connections = threading.BoundedSemaphore(max_streams + _EXTRA_CONNECTIONS)
        self._server.open_streams = set()
        self._server.open_lock = threading.Lock()
        host, port = self._server.server_address[:2]
        self.address = BindAddress(str(host), int(port))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": _WAKE_S},
            name=f"web {self.address}", daemon=True,
        )
        self._thread.start()
        self._closed = False

    @property
    def url(self) -> str:
        """The page's address as a browser on this machine would type it."""
        host = self.address.host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.address.port}/"

    def close(self) -> None:
        """Stop accepting, end every open stream, and release the port (idempotent).

        Streams notice within `_WAKE_S` because the content's mailboxes are closed by the sink
        first; a stream blocked writing to a viewer that stopped reading has its connection
        shut down. This waits for them for a bounded time.
        """
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._thread.join(timeout=5)
        self._server.server_close()
        with self._server.open_lock:
            stuck = list(self._server.open_streams)
        for conn in stuck:  # a viewer that stopped reading holds its thread in a write
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 2.0
        held = 0
        # Reacquiring every stream slot proves every stream handler has returned.
        while held < self._server.max_streams and time.monotonic() < deadline:
            if self._server.streams.acquire(timeout=0.05):
                held += 1
        if held < self._server.max_streams:
            log.warning("web: %d stream(s) still open at shutdown", self._server.max_streams - held)


def _bind_error(bind: BindAddress, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        free = _free_port_after(bind)
        example = f", e.g. {BindAddress(bind.host, free)}" if free else ""
        return f"web: {bind} is already in use (another edge-classify?); choose another port{example}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"web: {bind.host} is not an address of this machine; use 0.0.0.0 or 127.0.0.1"
    if exc.errno == errno.EACCES:
        return f"web: no permission to listen on {bind}; use a port above 1023, e.g. 8080"
    return f"web: cannot listen on {bind}: {exc.strerror or exc}"


def _free_port_after(bind: BindAddress, tries: int = 20) -> int | None:
    """The first of the next `tries` ports on the same address that is free now, if any.

    Only a hint for the message: another program may take it before the user retries.
    """
    family = socket.AF_INET6 if bind.is_ipv6 else socket.AF_INET
    for port in range(bind.port + 1, min(bind.port + 1 + tries, 65536)):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((bind.host, port))
            except OSError:
                continue
            return port
    return None


class _Handler(BaseHTTPRequestHandler):
    """One request. HTTP/1.0: every response ends its connection, which suits the streams."""

    server: _Server
    server_version = "edge-sdk"
    #: Seconds a client may take to send its request or to take a chunk of a stream.
    timeout = 10.0

    # -- dispatch ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        route = _ROUTES.get(url.path)
        content = self.server.content
        if url.path != "/healthz":
            if not content.policy.host_allowed(self.headers.get("Host")):
                self._send(HTTPStatus.FORBIDDEN, b"unknown Host\n", "text/plain")
                return
            token = parse_qs(url.query).get("token", [None])[0]
            if not content.policy.allows(self.headers.get("Authorization"), token):
                self._send(HTTPStatus.UNAUTHORIZED, b"token missing or wrong\n", "text/plain",
                           {"WWW-Authenticate": 'Bearer realm="edge-sdk"'})
                return
        if route is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
            return
        try:
            route(self)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            # The viewer went away or stopped reading: normal for a stream, nothing to report.
            self.close_connection = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The query may hold the token: log only the path.
        log.debug("web %s %s %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("web %s", format % args)

    # -- helpers ----------------------------------------------------------------------------

    def _send(self, status: HTTPStatus, body: bytes, ctype: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self._common_headers(headers)
        self.end_headers()
        self.wfile.write(body)

    def _common_headers(self, extra: dict[str, str] | None = None) -> None:
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        # Keeps a ?token= in the page address out of Referer headers.
        self.send_header("Referrer-Policy", "no-referrer")
        for key, value in (extra or {}).items():
            self.send_header(key, value)

    def _start_stream(self, ctype: str) -> bool:
        if not self.server.streams.acquire(blocking=False):
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"too many viewers\n", "text/plain",
                       {"Retry-After": "5"})
            return False
        with self.server.open_lock:
            self.server.open_streams.add(self.connection)
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", ctype)
        self._common_headers()
        self.end_headers()
        self.wfile.flush()
        return True

    def _client_gone(self) -> bool:
        """True if the client closed its end (checked while a stream idles, without blocking).

        Without this, a viewer who left would only be noticed at the next write, and the sink
        would go on encoding frames for nobody while the pipeline idles.
        """
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)
        except (OSError, ValueError):
            return True

    # -- routes -----------------------------------------------------------------------------

    def page(self) -> None:
        self._send(HTTPStatus.OK, self.server.content.page(), "text/html; charset=utf-8",
                   {"Content-Security-Policy": "default-src 'self'; img-src 'self'; "
                    "style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'"})

    def prediction(self) -> None:
        _, body = self.server.content.predictions.get()
        if body is None:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, b'{"error": "no prediction yet"}\n',
                       "application/json", {"Retry-After": "1"})
        else:
            self._send(HTTPStatus.OK, body, "application/json")

    def metrics(self) -> None:
        body, ctype = self.server.content.metrics()
        self._send(HTTPStatus.OK, body, ctype)

    def health(self) -> None:
        body = json.dumps(self.server.content.health()).encode() + b"\n"
        self._send(HTTPStatus.OK, body, "application/json")

    def _end_stream(self) -> None:
        with self.server.open_lock:
            self.server.open_streams.discard(self.connection)
        self.server.streams.release()

    def mjpeg(self) -> None:
        jpegs = self.server.content.jpegs
        if not self._start_stream(f"multipart/x-mixed-replace; boundary={BOUNDARY}"):
            return
        try:
            with jpegs.reading():
                seq = 0
                while not jpegs.closed:
                    got = jpegs.wait_newer(seq, _WAKE_S)
                    if got is None:
                        if self._client_gone():
                            break
                        continue
                    seq, jpeg = got
                    self.wfile.write(
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                        f"Content-Length: {len(jpeg)}\r\n\r\n".encode()
                    )
                    self.wfile.write(jpeg)
                    self.wfile.write(b"\r\n")
                    self.wfile.flush()
        finally:
            self._end_stream()

    def events(self) -> None:
        predictions = self.server.content.predictions
        if not self._start_stream("text/event-stream; charset=utf-8"):
            return
        try:
            with predictions.reading():
                self.wfile.write(b"retry: 2000\n\n")
                self.wfile.flush()
                seq, idle_since = 0, time.monotonic()
                while not predictions.closed:
                    got = predictions.wait_newer(seq, _WAKE_S)
                    if got is None:
                        if self._client_gone():
                            break
                        if time.monotonic() - idle_since > _KEEPALIVE_S:
                            self.wfile.write(b": keepalive\n\n")
                            self.wfile.flush()
                            idle_since = time.monotonic()
                        continue
                    seq, body = got
                    # JSON from json.dumps holds no raw newline, so it is one data line.
                    self.wfile.write(b"event: prediction\ndata: " + body + b"\n\n")
                    self.wfile.flush()
                    idle_since = time.monotonic()
        finally:
            self._end_stream()


_ROUTES = {
    "/": _Handler.page,
    "/index.html": _Handler.page,
    "/stream.mjpg": _Handler.mjpeg,
    "/api/prediction": _Handler.prediction,
    "/api/events": _Handler.events,
    "/metrics": _Handler.metrics,
    "/healthz": _Handler.health,
}
