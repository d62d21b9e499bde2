"""RTSP cameras through OpenCV's FFmpeg backend."""

from __future__ import annotations

import os

import cv2

from edge_sdk.errors import ConfigError
from edge_sdk.sources.base import host_port, split_network_uri
from edge_sdk.sources.opencv import OpenCVSource

_TRANSPORTS = ("tcp", "udp")


class RtspSource(OpenCVSource):
    """An RTSP stream (H.264/H.265/MJPEG), decoded by FFmpeg.

    Every frame of a compressed stream must be decoded (each depends on the previous ones), so
    the capture thread decodes them all and only the newest reaches inference. Reads time out
    after `timeout` seconds, which ends the stream and lets `Capture` reconnect.
    """

    def __init__(self, uri: str, *, timeout: float = 5.0, transport: str = "tcp") -> None:
        """Connect.

        Args:
            uri: ``rtsp://[user:password@]host[:port]/path``.
            timeout: Seconds allowed for connecting and for each frame.
            transport: "tcp" (default: no smeared frames from lost UDP packets) or "udp".

        Raises:
            ConfigError: malformed URI or bad transport.
            SourceError: the stream cannot be opened.
        """
        parts = split_network_uri(
            uri, "rtsp://host[:port]/path (rtsp://user:password@host/... to log in)"
        )
        assert parts.hostname is not None  # split_network_uri checked it
        if transport not in _TRANSPORTS:
            raise ConfigError(f"transport must be one of {', '.join(_TRANSPORTS)}, not {transport!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, not {timeout}")
        # OpenCV passes FFmpeg options only through this variable, read when a capture opens;
        # a value the user set wins.
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", f"rtsp_transport;{transport}")
        ms = int(timeout * 1000)
        where = f"rtsp://{host_port(parts.hostname, parts.port)}{parts.path}"
        cap = self.open_capture(
            uri,
            cv2.CAP_FFMPEG,
            f"cannot open {where}; check the address, path and login (rtsp://user:password@host/path)",
            (cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms),
        )
        super().__init__(uri, cap, live=True)
