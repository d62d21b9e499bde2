"""`http://` and `https://` MJPEG streams (IP cameras, `mjpg-streamer`, ESP32-CAM, ...).

The multipart stream is parsed here over a plain socket rather than through OpenCV/FFmpeg, for
two reasons: the parser knows which JPEGs are already waiting in the socket and skips all but the
newest *before* decoding any (a consumer that fell behind pays for one decode, not a backlog),
and each JPEG can be decoded at reduced size (`reduce`), which FFmpeg's MJPEG path cannot do.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import select
import socket
import ssl
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult, quote, unquote

import numpy as np

from edge_sdk.errors import ConfigError, SourceError
from edge_sdk.sources.base import (
    JpegSource,
    Packet,
    check_reduce,
    check_timeout,
    decode_jpeg,
    hide_password,
    host_port,
    now_ns,
    split_network_uri,
)
from edge_sdk.sources.opening import open_stoppably
from edge_sdk.types import Image

_HEADER_LIMIT = 64 * 1024
#: A part larger than this without a boundary means the stream is not what we think it is.
_PART_LIMIT = 32 * 1024 * 1024
#: At most this many waiting parts are skipped in one read (bounds the loop on a flood).
_SKIP_LIMIT = 256


def _status_fix(code: int, headers: dict[str, str]) -> str:
    """What to do about an HTTP status other than 200 and 401, for the error message."""
    if 300 <= code < 400 and headers.get("location"):
        return f"it points to {headers['location']}: give that URL (redirects are not followed)"
    if code >= 500:
        return "the camera's server failed; restart the camera or check its log"
    return "check the path (the camera's MJPEG stream URL)"


class MjpegHttpSource(JpegSource):
    """Frames of a ``multipart/x-mixed-replace`` JPEG stream over HTTP(S).

    `read_packet` returns the newest complete JPEG: parts that were already waiting behind it are
    dropped undecoded and counted in `skipped`. `fps` is measured from the arrival times of the
    last 30 parts. A stream that sends no complete frame for `timeout` seconds raises
    `SourceError`; a stream the server closes ends (`read` returns None), so a `Capture` with
    `reconnect` opens it again.

    Attributes:
        skipped: Parts received but dropped before decoding because a newer one was waiting.
    """

    @staticmethod
    def check_options(uri: str, options: Mapping[str, Any]) -> None:
        """Refuse option values opening would refuse, without connecting (for check-config).

        Raises:
            ConfigError: a timeout outside [0.1, 3600] seconds.
        """
        try:
            check_timeout(options.get("timeout", 5.0))
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from None

    def __init__(
        self, uri: str, *, reduce: int = 1, timeout: float = 5.0, verify: bool = True
    ) -> None:
        """Connect and read the first frame (which also tells the frame size).

        Args:
            uri: ``http://[user:password@]host[:port]/path``; ``https://`` too.
            reduce: Decode at 1/N size (1, 2, 4 or 8).
            timeout: Seconds allowed for connecting and between complete frames.
            verify: Check the HTTPS certificate (cameras often have self-signed ones).

        Raises:
            ConfigError: the URI is malformed.
            SourceError: the camera cannot be reached, refuses, or does not send MJPEG;
                `OpenInterrupted` when a stop came first (inside
                `edge_sdk.sources.opening.stoppable_opens`).
        """
        self._timeout = check_timeout(timeout)
        self.uri = uri
        check_reduce(reduce)
        self.live = True
        self.skipped = 0
        self._buf = bytearray()
        self._index = 0
        self._arrivals: collections.deque[int] = collections.deque(maxlen=30)
        self._pending: Packet | None = None
        self._closed = False
        self._sock: socket.socket | None = None
        parts = self.check_uri(uri)
        assert parts.hostname is not None  # check_uri checked it
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self._where = f"{parts.scheme}://{host_port(parts.hostname, port)}{parts.path or '/'}"
        self._has_login = parts.username is not None
        try:
            # close() from the waiting thread shuts the socket, which ends a stopped open's recv.
            first, image = open_stoppably(
                lambda: self._start(parts, port, verify), what=self._where,
                discard=lambda _: self.close(), wake=self.close,
            )
        except BaseException:
            self.close()
            raise
        self._pending = first
        self.full_size = (image.shape[1], image.shape[0])
        self.reduce = reduce

    @staticmethod
    def check_uri(uri: str) -> SplitResult:
        """Check the URI's form (scheme, host, port) without connecting; return its parts.

        Raises:
            ConfigError: a malformed URI; the message gives the accepted form.
        """
        forms = "http://host[:port]/path or https://... (http://user:password@host/... to log in)"
        parts = split_network_uri(uri, forms)
        if parts.scheme not in ("http", "https"):
            raise ConfigError(f"bad stream URI {hide_password(uri)!r}; expected {forms}")
        return parts

    # -- connection -------------------------------------------------------------------------

    def _start(self, parts: SplitResult, port: int, verify: bool) -> tuple[Packet, Image]:
        """Connect, check the response, read the first frame; return it and its decoded image."""
        try:
            self._sock = self._connect(parts, port, verify)
            # Set before this check, so a close() from another thread either sees the socket
            # or has set _closed by now: an abandoned open never keeps a connection.
            if self._closed:
                raise SourceError(f"{self._where} was closed while connecting")
            self._boundary = self._read_response_head()
            first = self._next_part(block=True)
            if first is None:
                raise SourceError(f"{self._where} closed the stream before the first frame")
            image = decode_jpeg(first.data)
            if image is None:
                raise SourceError(f"the first frame from {self._where} is not a JPEG")
        except BaseException:
            self.close()
            raise
        return first, image

    def _connect(self, parts: SplitResult, port: int, verify: bool) -> socket.socket:
        host = parts.hostname
        assert host is not None  # split_network_uri checked it
        try:
            sock = socket.create_connection((host, port), timeout=self._timeout)
        except OSError as exc:
            raise SourceError(
                f"cannot connect to {self._where} ({exc.strerror or exc}); "
                "check the camera is on and the address"
            ) from exc
        if parts.scheme == "https":
            context = ssl.create_default_context()
            if not verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            try:
                sock = context.wrap_socket(sock, server_hostname=host)
            except (ssl.SSLError, OSError) as exc:
                sock.close()
                raise SourceError(
                    f"TLS with {self._where} failed ({exc}); for a self-signed camera use verify=False"
                ) from exc
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # Percent-encode what HTTP does not allow raw (spaces, non-ASCII); escapes and the
        # URI's own delimiters stay as given.
        target = quote(target, safe="/?&=%:@!$'()*+,;~-._")
        lines = [
            f"GET {target} HTTP/1.0",  # 1.0: no chunked transfer encoding to undo
            f"Host: {host_port(host, port)}",
            "User-Agent: edge-sdk",
            "Accept: multipart/x-mixed-replace, image/jpeg",
        ]
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            lines.append(f"Authorization: Basic {base64.b64encode(pair).decode()}")
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        except OSError as exc:
            sock.close()
            raise SourceError(f"cannot send the request to {self._where}: {exc}") from exc
        return sock

    def _read_response_head(self) -> bytes:
        """Read the status line and headers; return the multipart boundary."""
        # The socket's timeout bounds each read: a server trickling a byte now and then would
        # otherwise hold the open for ever.
        deadline = time.monotonic() + self._timeout
        while (end := self._buf.find(b"\r\n\r\n")) < 0:
            if len(self._buf) > _HEADER_LIMIT or not self._fill(block=True):
                raise SourceError(f"{self._where} did not send an HTTP response; is it a camera?")
            if time.monotonic() > deadline:
                raise SourceError(f"{self._where} took over {self._timeout:g} s to send its HTTP "
                                  "response head; is it a camera?")
        head = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
        del self._buf[: end + 4]
        status = head[0].split(" ", 2)
        if len(status) < 2 or not status[0].startswith("HTTP/") or not status[1].isdigit():
            raise SourceError(f"{self._where} did not send an HTTP response; is it a camera?")
        code = int(status[1])
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if code == 401:
            if self._has_login:
                raise SourceError(f"{self._where} refused the login in the URI; check the user name "
                                  "and password (a / ? # @ in them must be percent-encoded)")
            raise SourceError(
                f"{self._where} needs a login: put it in the URI, http://user:password@host/..."
            )
        if code != 200:
            reason = status[2] if len(status) > 2 else ""
            raise SourceError(f"{self._where} answered HTTP {code} {reason}; {_status_fix(code, headers)}")
        content_type = headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/"):
            raise SourceError(
                f"{self._where} sends {content_type or 'no Content-Type'}, not an MJPEG stream "
                "(multipart/x-mixed-replace); give the camera's MJPEG stream URL"
            )
        for param in content_type.split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "boundary" and value:
                # Some cameras put the "--" of the delimiter into the header as well.
                return value.strip().strip('"').lstrip("-").encode("latin-1")
        raise SourceError(f"{self._where} sends a multipart stream without a boundary")

    # -- parsing ----------------------------------------------------------------------------

    def _fill(self, *, block: bool) -> bool:
        """Append what the socket has to the buffer. False at end of stream or when not blocking
        and nothing is waiting."""
        sock = self._sock
        if sock is None:
            return False
        if not block:
            pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
            if not pending and not select.select([sock], [], [], 0)[0]:
                return False
        try:
            chunk = sock.recv(256 * 1024)
        except TimeoutError:
            raise SourceError(
                f"no data from {self._where} for {self._timeout:g} s; reconnecting may help"
            ) from None
        except OSError as exc:
            if self._closed:
                return False
            raise SourceError(f"lost the stream from {self._where}: {exc}") from exc
        if not chunk:
            return False
        self._buf += chunk
        if len(self._buf) > _PART_LIMIT:
            raise SourceError(f"{self._where} sent {_PART_LIMIT} bytes without a part boundary")
        return True

    def _parse_part(self) -> bytes | None:
        """Remove and return the first complete part's body from the buffer, if there is one."""
        buf = self._buf
        start = buf.find(self._boundary)
        if start < 0:
            return None
        head_end = buf.find(b"\r\n\r\n", start)
        if head_end < 0:
            return None
        body_start = head_end + 4
        length = -1
        for line in bytes(buf[start:head_end]).split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length" and value.strip().isdigit():
                length = int(value.strip())
        if length >= 0:
            if len(buf) < body_start + length:
                return None
            body = bytes(buf[body_start : body_start + length])
            del buf[: body_start + length]
            return body
        # No Content-Length: the body runs to the next delimiter ("\r\n--boundary").
        body_end = self._delimiter(body_start)
        if body_end < 0:
            return None
        body = bytes(buf[body_start:body_end]).rstrip(b"\r\n")
        del buf[:body_end]
        return body

    def _delimiter(self, start: int) -> int:
        """Where the next delimiter line begins at or after `start` (its dashes), or -1.

        The boundary text alone is no delimiter: a JPEG may hold it (a comment "camera frame
        0001" with the boundary "frame"). RFC 2046's delimiter is the boundary after "--" at
        the start of a line.
        """
        buf, boundary = self._buf, self._boundary
        at = start
        while (found := buf.find(boundary, at)) >= 0:
            dashes = found
            while dashes > start and buf[dashes - 1] == ord("-"):
                dashes -= 1
            if found - dashes >= 2 and (dashes == 0 or buf[dashes - 1] == ord("\n")):
                return dashes
            at = found + 1
        return -1

    def _next_part(self, *, block: bool) -> Packet | None:
        """The next complete part: waits for one if `block`, else only takes a buffered one."""
        deadline = time.monotonic() + self._timeout
        while (body := self._parse_part()) is None:
            if not self._fill(block=block):
                return None
            if block and time.monotonic() > deadline:
                raise SourceError(
                    f"no complete frame from {self._where} for {self._timeout:g} s; "
                    "reconnecting may help"
                )
        stamp = now_ns()
        self._arrivals.append(stamp)
        if len(self._arrivals) >= 2:
            span = self._arrivals[-1] - self._arrivals[0]
            if span > 0:
                self.fps = (len(self._arrivals) - 1) * 1e9 / span
        packet = Packet(np.frombuffer(body, dtype=np.uint8), self._index, stamp)
        self._index += 1
        return packet

    # -- the source -------------------------------------------------------------------------

    def read_packet(self) -> Packet | None:
        newest: Packet | None = self._pending
        self._pending = None
        if newest is None:
            if self._closed:
                return None
            try:
                newest = self._next_part(block=True)
            except SourceError:
                if self._closed:
                    return None
                raise
            if newest is None:
                return None
        # Whatever is already waiting behind it is newer: keep the newest, decode none of them.
        for _ in range(_SKIP_LIMIT):
            try:
                newer = self._next_part(block=False)
            except SourceError:
                break  # report the trouble on the next read, after handing this frame out
            if newer is None:
                break
            newest = newer
            self.skipped += 1
        return newest

    def close(self) -> None:
        self._closed = True
        sock, self._sock = getattr(self, "_sock", None), None
        if sock is not None:
            # shutdown wakes a recv blocked in another thread (the capture thread).
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
