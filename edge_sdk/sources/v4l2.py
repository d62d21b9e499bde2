"""USB cameras through OpenCV's V4L2 backend (`0`, `/dev/video0`, `v4l2:///dev/video0`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from edge_sdk.errors import ConfigError, SourceError
from edge_sdk.sources.base import JpegSource, Packet, check_reduce, decode_jpeg, now_ns
from edge_sdk.sources.camera_settings import camera_fourcc, camera_fps, camera_size
from edge_sdk.sources.opencv import OpenCVSource, capture_fourcc
from edge_sdk.types import Frame

log = logging.getLogger("edge_sdk.sources")


def v4l2_device(uri: str) -> str:
    """Return the device path `uri` names: "0" -> "/dev/video0", "v4l2:///dev/video2" -> ...

    Raises:
        ConfigError: not a camera number, /dev/videoN path or v4l2:// URI.
    """
    text = uri.strip()
    if text.isdigit():
        return f"/dev/video{int(text)}"
    if text.startswith("v4l2://"):
        text = text[len("v4l2://") :]
        if text.isdigit():  # v4l2://0, a common slip for v4l2:///dev/video0
            return f"/dev/video{int(text)}"
    if text.startswith("/dev/") and len(text) > len("/dev/"):
        return text
    raise ConfigError(f"bad camera {uri!r}; expected N, /dev/videoN or v4l2:///dev/videoN")


def _camera_settings(size: tuple[int, int] | str | None, fps: float | None,
                     fourcc: str) -> tuple[int, int] | None:
    """Check what is asked of the camera; return the size as (width, height), or None.

    Raises:
        ConfigError: a malformed or oversized size, a rate out of range, or a bad fourcc.
    """
    wanted = camera_size(size) if size is not None else None
    camera_fps(fps, optional=True)
    camera_fourcc(fourcc)
    return wanted


def check_device(device: str) -> None:
    """Raise SourceError unless `device` exists and this user may open it."""
    if not os.path.exists(device):
        raise SourceError(f"no camera at {device}; try --source FILE")
    if not os.access(device, os.R_OK | os.W_OK):
        raise SourceError(
            f"no permission to open {device}; add yourself to the video group "
            "(sudo usermod -aG video $USER, then log in again)"
        )


class V4L2Source(JpegSource, OpenCVSource):
    """A USB (UVC) camera.

    It asks the camera for MJPG (`fourcc`), which most webcams need for 720p at 30 fps over USB
    2 (raw YUYV fits only about 10 fps there), and for the requested size and rate; `size` and
    `fps` then report what the driver actually granted. When the camera sends MJPG, OpenCV is
    told not to convert (``CAP_PROP_CONVERT_RGB = 0``), so reads return the JPEG bytes: the
    capture thread then keeps them undecoded and decodes only the frames inference takes, at
    1/`reduce` size. A camera whose JPEGs do not decode that way falls back to OpenCV's decode.
    """

    @staticmethod
    def check_uri(uri: str) -> None:
        """Check the camera URI's form (N, /dev/videoN, v4l2:///dev/videoN), not the device.

        Raises:
            ConfigError: a malformed camera URI.
        """
        v4l2_device(uri)

    @staticmethod
    def check_options(uri: str, options: Mapping[str, Any]) -> None:
        """Refuse option values opening would refuse, without the camera (for check-config).

        Raises:
            ConfigError: a malformed or oversized size, a rate out of range, or a bad fourcc.
        """
        _camera_settings(options.get("size"), options.get("fps"), options.get("fourcc", "MJPG"))

    def __init__(
        self,
        uri: str,
        *,
        size: tuple[int, int] | str | None = None,
        fps: float | None = None,
        fourcc: str = "MJPG",
        reduce: int = 1,
    ) -> None:
        """Open the camera.

        Args:
            uri: ``N``, ``/dev/videoN`` or ``v4l2:///dev/videoN``.
            size: (width, height) or "WxH" to ask for; None keeps the driver's default.
            fps: Frame rate to ask for; None keeps the driver's default.
            fourcc: Pixel format to ask for ("MJPG", "YUYV", ...); "" keeps the default.
            reduce: Decode MJPG frames at 1/N size (1, 2, 4 or 8).

        Raises:
            ConfigError: malformed URI, size, rate or fourcc.
            SourceError: no camera at that path, no permission, or it cannot be opened.
        """
        device = v4l2_device(uri)
        wanted = _camera_settings(size, fps, fourcc)
        check_reduce(reduce)
        check_device(device)
        cap = self.open_capture(
            device,
            cv2.CAP_V4L2,
            f"cannot open the camera at {device}; is another program using it? (fuser {device})",
        )
        # The order matters to many drivers: pixel format first, then size, then rate.
        if fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*fourcc))
        if wanted is not None:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, wanted[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, wanted[1])
        if fps is not None:
            cap.set(cv2.CAP_PROP_FPS, float(fps))
        OpenCVSource.__init__(self, uri, cap, live=True)
        self.full_size = self.size
        self._pending: Packet | None = None
        self.packets = capture_fourcc(cap).upper() == "MJPG" and self._start_packets(cap)
        self.reduce = reduce
        if wanted is not None and self.full_size != wanted:
            log.warning("%s gives %dx%d, not the %dx%d asked for", device, *self.full_size, *wanted)

    def _start_packets(self, cap: cv2.VideoCapture) -> bool:
        """Ask for undecoded JPEGs and check the first one; False (converting again) if not."""
        if cap.set(cv2.CAP_PROP_CONVERT_RGB, 0):
            ok, data = cap.read()
            if ok and data is not None and data.ndim <= 2 and data.dtype == np.uint8:
                packet = Packet(np.asarray(data, np.uint8).reshape(-1), self._index, now_ns())
                if decode_jpeg(packet.data) is not None:
                    self._pending = packet
                    self._index += 1
                    return True
            log.info("%s: its MJPG frames do not decode directly; letting OpenCV convert", self.uri)
        cap.set(cv2.CAP_PROP_CONVERT_RGB, 1)
        return False

    def read_packet(self) -> Packet | None:
        if not self.packets:
            raise TypeError(f"{self.uri} does not send MJPG: use read()")
        if self._pending is not None:
            packet, self._pending = self._pending, None
            return packet
        with self._lock:
            if self._cap is None:
                return None
            ok, data = self._cap.read()
            if self._closing:
                self._release()
                return None
        if not ok or data is None:
            return None
        packet = Packet(np.asarray(data, np.uint8).reshape(-1), self._index, now_ns())
        self._index += 1
        return packet

    def read(self) -> Frame | None:
        if self.packets:
            return JpegSource.read(self)
        return OpenCVSource.read(self)

    def close(self) -> None:
        OpenCVSource.close(self)
