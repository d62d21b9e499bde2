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
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

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
#: thread for up to `_REQUEST_DEADLINE_S` while it sends its request; past the cap a connection
#: gets an immediate 503, so a flood of slow clients cannot pile up threads on the board.
_EXTRA_CONNECTIONS = 32
#: Seconds a client has to send its whole request line and headers. The handler's timeout
#: bounds each read only, so without this a byte every few seconds would hold a thread for ever.
_REQUEST_DEADLINE_S = 10.0
#: Connections one client address may have still sending their request; past it, 503 at once.
#: A browser has a few at a time (requests, and sockets it opens ahead of need), so slow
#: clients from one address cannot take every slot while the others stay served.
_SENDING_PER_CLIENT = 16
#: Seconds an event stream lasts before the server ends it with a "renew" event, after which
#: the page (like any EventSource) reconnects at once. A browser that froze on a host that stays
#: online (a phone locked with the page open) never reads again, but its kernel keeps taking the
#: small events into a receive buffer that grows to megabytes, so no write would ever block and
#: its slot would be held for an hour or more; this bounds it.
_EVENTS_RENEW_S = 300.0
#: The "renew" event: reconnect after 100 ms (the `retry` field takes effect at once), and a
#: data line, without which an EventSource does not dispatch the event.
_RENEW = b"retry: 100\nevent: renew\ndata: {}\n\n"
#: Seconds sent data may stay unacknowledged before the kernel drops a stream's connection
#: (Linux's TCP_USER_TIMEOUT): a viewer whose network went away without a word (Wi-Fi lost, a
#: laptop asleep) would otherwise hold its slot for TCP's ~15 minutes of retransmissions.
_UNACKNOWLEDGED_S = 30
_BUSY_BODY = b"busy: too many connections (from this address, or in all); try again in a few seconds\n"
_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 5\r\n"
         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))


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
    #: Connections still sending their request: socket -> (client address, deadline).
    sending: dict[socket.socket, tuple[str, float]]

    def process_request(self, request: Any, client_address: Any) -> None:
        client = str(client_address[0])
        with self.open_lock:
            crowded = sum(who == client for who, _ in self.sending.values()) >= _SENDING_PER_CLIENT
            if not crowded:
                self.sending[request] = (client, time.monotonic() + _REQUEST_DEADLINE_S)
        if crowded or not self.connections.acquire(blocking=False):
            self.request_received(request)
            with contextlib.suppress(OSError):
                request.sendall(_BUSY)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.request_received(request)
            self.connections.release()  # no thread was started to release it
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.request_received(request)
            self.connections.release()

    def request_received(self, request: socket.socket) -> None:
        """The connection has sent its request (or is gone): its deadline no longer applies."""
        with self.open_lock:
            self.sending.pop(request, None)

    def service_actions(self) -> None:
        # Called by serve_forever between polls: cut the connections past their deadline, which
        # ends the blocked read in their handler thread.
        now = time.monotonic()
        with self.open_lock:
            late = [conn for conn, (_, deadline) in self.sending.items() if deadline <= now]
            for conn in late:
                del self.sending[conn]
        for conn in late:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The standard library prints a traceback to stderr; a client that resets or times
        # out is normal on a network, and anything else is one line in the log.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            log.debug("web: connection from %s ended: %s", client_address[0], exc)
        else:
            log.error("web: a request from %s failed: %s: %s", client_address[0],
                      type(exc).__name__, exc)
            log.debug("web: the failure", exc_info=True)


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
            raise SinkError(bind_error(bind, exc)) from None
        self._server.content = content
        self._server.max_streams = max_streams
        self._server.streams = threading.BoundedSemaphore(max_streams)
        self._server.connections = threading.BoundedSemaphore(max_streams + _EXTRA_CONNECTIONS)
        self._server.open_streams = set()
        self._server.open_lock = threading.Lock()
        self._server.sending = {}
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


def bind_error(bind: BindAddress, exc: OSError) -> str:
    """The one-line message for a failed listen on `bind`, with its fix (shared with doctor)."""
    if exc.errno == errno.EADDRINUSE:
        free = _free_port_after(bind)
        example = f", e.g. {BindAddress(bind.host, free)}" if free else ""
        return f"web: {bind} is already in use (another edge-classify?); choose another port{example}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"web: {bind.host} is not an address of this machine; use 0.0.0.0 or 127.0.0.1"
    if exc.errno == errno.EACCES:
        return f"web: no permission to listen on {bind}; use a port above 1023, e.g. 8080"
    return f"web: cannot listen on {bind}: {exc.strerror or exc}"


def _query_token(query: str) -> str | None:
    """The ``token`` parameter of a query string, or None.

    Percent-escapes are decoded but ``+`` is kept: base64 tokens hold it, and a browser's
    encodeURIComponent sends it as %2B anyway.
    """
    for part in query.split("&"):
        key, sep, value = part.partition("=")
        if sep and unquote(key) == "token":
            return unquote(value)
    return None


def listen_problem(bind: BindAddress) -> OSError | None:
    """Why the server could not listen on `bind` now (None: it could), found by binding a
    socket as the server does (SO_REUSEADDR) and closing it again. Shared with doctor."""
    family = socket.AF_INET6 if bind.is_ipv6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bind.host, bind.port))
        except OSError as exc:
            return exc
    return None


def _free_port_after(bind: BindAddress, tries: int = 20) -> int | None:
    """The first of the next `tries` ports on the same address that is free now, if any.

    Only a hint for the message: another program may take it before the user retries.
    """
    for port in range(bind.port + 1, min(bind.port + 1 + tries, 65536)):
        if listen_problem(BindAddress(bind.host, port)) is None:
            return port
    return None


class _Handler(BaseHTTPRequestHandler):
    """One request. HTTP/1.0: every response ends its connection, which suits the streams."""

    server: _Server
    server_version = "edge-sdk"
    #: Seconds a read of the request, or a write of a stream's chunk, may block.
    timeout = 10.0
    # The standard library's error pages (400, 414, 431, 501) as plain text, like ours.
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s\n"

    # -- dispatch ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        self.server.request_received(self.connection)
        try:
            self._dispatch()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            # The viewer went away or stopped reading: normal for a stream, nothing to report.
            self.close_connection = True

    def do_HEAD(self) -> None:
        # Uptime checkers probe with HEAD: the same status and headers as GET, no body (and a
        # stream is not started).
        self.do_GET()

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        route = _ROUTES.get(url.path)
        content = self.server.content
        if url.path != "/healthz":
            if not content.policy.host_allowed(self.headers.get("Host")):
                self._send(HTTPStatus.FORBIDDEN, b"unknown Host\n", "text/plain")
                return
            if not content.policy.allows(self.headers.get("Authorization"), _query_token(url.query)):
                self._send(HTTPStatus.UNAUTHORIZED, b"token missing or wrong\n", "text/plain",
                           {"WWW-Authenticate": 'Bearer realm="edge-sdk"'})
                return
        if route is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
            return
        route(self)

    def version_string(self) -> str:
        return self.server_version  # not the Python version too

    def end_headers(self) -> None:
        # Every response, the standard library's error replies included.
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        # Keeps a ?token= in the page address out of Referer headers.
        self.send_header("Referrer-Policy", "no-referrer")
        super().end_headers()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The query may hold the token: log only the path. A request line that did not parse
        # leaves no path (the reply is a 400).
        path = getattr(self, "path", "")
        log.debug("web %s %s %s", getattr(self, "command", None) or "-", urlsplit(path).path, code)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("web %s", format % args)

    # -- helpers ----------------------------------------------------------------------------

    def _send(self, status: HTTPStatus, body: bytes, ctype: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _start_stream(self, ctype: str) -> bool:
        if self.command == "HEAD":
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", ctype)
            self.end_headers()
            return False
        if not self.server.streams.acquire(blocking=False):
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"too many viewers\n", "text/plain",
                       {"Retry-After": "5"})
            return False
        with self.server.open_lock:
            self.server.open_streams.add(self.connection)
        _drop_when_unacknowledged(self.connection)
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", ctype)
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
                renew_at = idle_since + _EVENTS_RENEW_S
                while not predictions.closed:
                    if time.monotonic() >= renew_at:
                        self.wfile.write(_RENEW)
                        self.wfile.flush()
                        break
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


def _drop_when_unacknowledged(conn: socket.socket) -> None:
    """Have the kernel end `conn` once data sent on it went unacknowledged for
    `_UNACKNOWLEDGED_S` (Linux; elsewhere TCP's own retransmission limit stays). The stream's
    next write then fails, which ends its handler and frees its slot."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if option is not None:
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.IPPROTO_TCP, option, _UNACKNOWLEDGED_S * 1000)


_ROUTES = {
    "/": _Handler.page,
    "/index.html": _Handler.page,
    "/stream.mjpg": _Handler.mjpeg,
    "/api/prediction": _Handler.prediction,
    "/api/events": _Handler.events,
    "/metrics": _Handler.metrics,
    "/healthz": _Handler.health,
}
