"""RTSP cameras through OpenCV's FFmpeg backend."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import SplitResult

import cv2

from edge_sdk.errors import ConfigError, SourceError
from edge_sdk.sources.base import check_timeout, host_port, split_network_uri
from edge_sdk.sources.opencv import OpenCVSource
from edge_sdk.sources.opening import open_stoppably
from edge_sdk.types import Frame

_TRANSPORTS = ("tcp", "udp")
#: The RTSP port when the URI names none.
DEFAULT_PORT = 554
#: The only way to hand FFmpeg options to OpenCV: read by every FFmpeg open, process-wide.
OPTIONS_VAR = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


def ffmpeg_options(user: str | None, transport: str) -> str:
    """The OPENCV_FFMPEG_CAPTURE_OPTIONS value for one open: the user's options plus ours.

    Args:
        user: What the variable held before edge-sdk touched it (``key;value|key;value``), or None.
        transport: The source's transport; an ``rtsp_transport`` the user set wins over it.
    """
    entries = [e for e in (user or "").split("|") if e.strip()]
    if not any(e.split(";", 1)[0].strip() == "rtsp_transport" for e in entries):
        entries.append(f"rtsp_transport;{transport}")
    return "|".join(entries)


class _OptionsVariable:
    """Sets OPENCV_FFMPEG_CAPTURE_OPTIONS for the RTSP opens running now, and puts it back after.

    The variable is process-wide, so sources that want different values cannot open at the same
    time: opens wanting the value already set run together, one wanting another waits until they
    are done (at most their open timeout). When the last open ends, the variable gets back the
    user's value (or is removed), so a later source sees its own transport, not a stale one.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._users = 0
        self._value: str | None = None  # what the running opens set
        self._saved: str | None = None  # the user's value, while ours is set

    @contextlib.contextmanager
    def set_for(self, transport: str) -> Iterator[None]:
        """Hold the variable at the user's options plus `transport` for the body (an open)."""
        with self._cond:
            while True:
                user = os.environ.get(OPTIONS_VAR) if self._users == 0 else self._saved
                value = ffmpeg_options(user, transport)
                if self._users == 0 or value == self._value:
                    break
                self._cond.wait()
            if self._users == 0:
                self._saved, self._value = user, value
                os.environ[OPTIONS_VAR] = value
            self._users += 1
        try:
            yield
        finally:
            with self._cond:
                self._users -= 1
                if self._users == 0:
                    if self._saved is None:
                        os.environ.pop(OPTIONS_VAR, None)
                    else:
                        os.environ[OPTIONS_VAR] = self._saved
                    self._value = self._saved = None
                    self._cond.notify_all()


_options = _OptionsVariable()


class RtspSource(OpenCVSource):
    """An RTSP stream (H.264/H.265/MJPEG), decoded by FFmpeg.

    Every frame of a compressed stream must be decoded (each depends on the previous ones), so
    the capture thread decodes them all and only the newest reaches inference. Reads time out
    after `timeout` seconds, which ends the stream and lets `Capture` reconnect.
    """

    @staticmethod
    def check_uri(uri: str) -> SplitResult:
        """Check the URI's form (host, port) without connecting; return its parts.

        Raises:
            ConfigError: a malformed URI; the message gives the accepted form.
        """
        return split_network_uri(uri, "rtsp://host[:port]/path (rtsp://user:password@host/... to log in)")

    @staticmethod
    def check_options(uri: str, options: Mapping[str, Any]) -> None:
        """Refuse option values opening would refuse, without connecting (for check-config).

        Raises:
            ConfigError: an unknown transport or a timeout outside [0.1, 3600] seconds.
        """
        _check_transport(options.get("transport", "tcp"))
        try:
            check_timeout(options.get("timeout", 5.0))
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from None

    def __init__(self, uri: str, *, timeout: float = 5.0, transport: str = "tcp") -> None:
        """Connect.

        Args:
            uri: ``rtsp://[user:password@]host[:port]/path``.
            timeout: Seconds allowed for connecting and for each frame.
            transport: "tcp" (default: no smeared frames from lost UDP packets) or "udp". An
                ``rtsp_transport`` in $OPENCV_FFMPEG_CAPTURE_OPTIONS wins; other options there
                are passed on too.

        Raises:
            ConfigError: malformed URI or bad transport.
            TypeError, ValueError: a `timeout` that is not a number in [0.1, 3600].
            SourceError: the stream cannot be opened; `OpenInterrupted` when a stop came first
                (inside `edge_sdk.sources.opening.stoppable_opens`).
        """
        parts = self.check_uri(uri)
        assert parts.hostname is not None  # check_uri checked it
        _check_transport(transport)
        ms = int(check_timeout(timeout) * 1000)
        host, port = parts.hostname, parts.port or DEFAULT_PORT
        where = f"rtsp://{host_port(host, parts.port)}{parts.path}"

        def open_stream() -> cv2.VideoCapture:
            # OpenCV passes FFmpeg options only through an environment variable, read when a
            # capture opens (not while it reads), so it is set just for the open.
            with _options.set_for(transport):
                try:
                    return self.open_capture(
                        uri, cv2.CAP_FFMPEG, "",
                        (cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms),
                    )
                except SourceError:
                    pass  # the reason is found below, once the variable is put back
            raise SourceError(
                f"cannot open {where}{unreachable(host, port, timeout)}; check the address, path "
                "and login (rtsp://user:password@host/path)"
            )

        # FFmpeg's open returns to Python only at its timeout: run it where a stop can leave it.
        cap = open_stoppably(open_stream, what=where, discard=lambda c: c.release())
        super().__init__(uri, cap, live=True)
        self._timeout = float(timeout)
        self._where = where

    def read(self) -> Frame | None:
        """The next frame; a SourceError when it took the whole `timeout` to come.

        A camera that froze makes FFmpeg's read give up at the timeout and hand out the frame
        it had buffered from before: seconds old, yet it would be stamped as new, and the next
        read would do the same, so the stall would never be noticed.
        """
        started = time.monotonic()
        frame = super().read()
        if frame is not None and time.monotonic() - started >= self._timeout:
            raise SourceError(f"no fresh frame from {self._where} for {self._timeout:g} s (the camera "
                              "or its network stalled); dropped the stale one")
        return frame


def _check_transport(transport: str) -> None:
    if transport not in _TRANSPORTS:
        raise ConfigError(f"transport must be one of {', '.join(_TRANSPORTS)}, not {transport!r}")


def unreachable(host: str, port: int, timeout: float) -> str:
    """`` (cannot connect to host:port: reason)`` if a TCP connection fails, else "".

    FFmpeg knows why an open failed but only prints it (silenced, see
    `edge_sdk.sources.opening.quiet_ffmpeg`); a plain connect tells the commonest reasons (no
    server, wrong port, no route) again, for the error message. One that connects says nothing:
    then the path, the login or the stream itself is at fault.
    """
    try:
        with socket.create_connection((host, port), timeout=min(timeout, 1.0)):
            return ""
    except OSError as exc:
        return f" (cannot connect to {host_port(host, port)}: {exc.strerror or exc})"
