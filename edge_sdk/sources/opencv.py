"""The shared part of every source that reads through `cv2.VideoCapture`."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence

import cv2
import numpy as np

from edge_sdk.errors import SourceError
from edge_sdk.sources.base import BaseSource, now_ns
from edge_sdk.sources.opening import quiet_ffmpeg, quiet_opencv
from edge_sdk.types import Frame, Image


def capture_fps(cap: cv2.VideoCapture) -> float:
    """The rate a VideoCapture reports, or 0.0 when it reports nonsense (0, NaN, 1000+)."""
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    return fps if 0.0 < fps < 1000.0 else 0.0


def capture_fourcc(cap: cv2.VideoCapture) -> str:
    """The four-character codec code a VideoCapture reports ("" when unknown)."""
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    return text if text.isprintable() and code else ""


def as_bgr(image: np.ndarray) -> Image:
    """Return a decoded OpenCV image as H x W x 3 uint8 BGR (grey and BGRA are converted)."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.asarray(image, dtype=np.uint8)


class OpenCVSource(BaseSource):
    """Frames from an open `cv2.VideoCapture`; subclasses decide how to open it.

    `read` and `close` may be called from different threads (the capture thread reads while the
    pipeline closes): a lock keeps `release` from running in the middle of a `read`.
    """

    def __init__(self, uri: str, cap: cv2.VideoCapture, *, live: bool) -> None:
        self.uri = uri
        self.live = live
        self._cap: cv2.VideoCapture | None = cap
        self._lock = threading.Lock()
        self._closing = False
        self._index = 0
        self.size = (
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        self.fps = capture_fps(cap)

    @staticmethod
    def open_capture(
        target: str | int, api: int, what: str, params: Sequence[int] = (), *, quiet: bool = True
    ) -> cv2.VideoCapture:
        """Open a VideoCapture or raise SourceError naming `what` could not be opened.

        Args:
            quiet: Keep OpenCV's and FFmpeg's own lines about a failed open off stderr (see
                `edge_sdk.sources.opening`): the SourceError says it in one line. False where
                those lines are the only explanation (a GStreamer pipeline's errors).
        """
        if api == cv2.CAP_FFMPEG and quiet:
            quiet_ffmpeg()
        with quiet_opencv() if quiet else contextlib.nullcontext():
            cap = cv2.VideoCapture(target, api, list(params)) if params else cv2.VideoCapture(target, api)
        if not cap.isOpened():
            cap.release()
            raise SourceError(what)
        return cap

    def read(self) -> Frame | None:
        with self._lock:
            if self._cap is None:
                return None
            ok, image = self._cap.read()
            if self._closing:  # close() was called during the read: release here
                self._release()
                return None
        if not ok or image is None:
            return None
        if 0 in self.size:
            # Some backends learn the size only from the first decoded frame (RTSP H.264 under
            # load reports 0 x 0 at open): from then on the source reports the real one.
            self.size = (int(image.shape[1]), int(image.shape[0]))
        frame = Frame(as_bgr(image), self._index, now_ns(), self.uri)
        self._index += 1
        return frame

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def close(self) -> None:
        # Never wait for a read blocked in the driver (up to its timeout): if one is running,
        # the reading thread releases the capture as soon as it returns.
        self._closing = True
        if self._lock.acquire(blocking=False):
            try:
                self._release()
            finally:
                self._lock.release()
