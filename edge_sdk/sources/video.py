"""Video files through OpenCV's FFmpeg backend, with MJPEG files read as undecoded JPEGs."""

from __future__ import annotations

import logging
import os
import threading

import cv2
import numpy as np

from edge_sdk.errors import SourceError, file_problem
from edge_sdk.sources.base import (
    JpegSource,
    Packet,
    check_reduce,
    decode_jpeg,
    file_path,
    now_ns,
)
from edge_sdk.sources.opencv import OpenCVSource, as_bgr, capture_fourcc, capture_fps
from edge_sdk.types import Frame

log = logging.getLogger("edge_sdk.sources")

#: FourCCs whose packets are plain JPEG images (what USB webcams record).
MJPEG_FOURCCS = frozenset({"MJPG", "MJPEG", "JPEG", "AVRN", "DMB1"})
_SOI = b"\xff\xd8"


class VideoFileSource(JpegSource):
    """Frames of a video file, in order; the source ends at the end of the file.

    For an MJPEG file the frames are read as the JPEG bytes the file stores
    (``CAP_PROP_FORMAT = -1`` makes OpenCV return the encoded packet), so the capture thread can
    decode them at reduced size, or not at all when they are dropped. Other codecs (H.264, ...)
    are decoded by FFmpeg at full size and `reduce` does not apply (`packets` is False).

    Attributes:
        frame_count: Frames in the file as its container reports it; 0 when unknown.
        codec: The file's FourCC, e.g. "MJPG" or "h264".
    """

    def __init__(self, uri: str, *, reduce: int = 1, loop: bool = False) -> None:
        """Open the file.

        Args:
            uri: A path or ``file://`` path to a video file.
            reduce: Decode MJPEG frames at 1/N size (1, 2, 4 or 8); ignored for other codecs.
            loop: Start again at the end instead of ending (for demos).

        Raises:
            SourceError: no such file, no permission to read it, or FFmpeg cannot read it as
                a video.
            ValueError: bad `reduce`.
        """
        self.uri = uri
        check_reduce(reduce)
        self.live = False
        self._path = file_path(uri)
        if os.path.isdir(self._path) or not os.path.exists(self._path):
            raise SourceError(f"no such video file: {self._path}; check the path")
        if not os.path.isfile(self._path):  # a FIFO or a device: FFmpeg would block on it
            raise SourceError(f"{self._path} is not a regular file; give a video file (or a camera "
                              "as /dev/videoN)")
        try:
            # FFmpeg says only that it cannot open the file, as it would for a corrupt one.
            open(self._path, "rb").close()
        except OSError as exc:
            raise SourceError(f"cannot read {self._path}: {file_problem(exc)}") from None
        if os.path.getsize(self._path) == 0:
            raise SourceError(f"{self._path} is empty (0 bytes); give a video file")
        self._loop = loop
        self._lock = threading.Lock()
        self._closing = False
        self._index = 0
        self._warned_short = False
        self._pending: Packet | None = None
        self._cap: cv2.VideoCapture | None = self._open()
        cap = self._cap
        self.codec = capture_fourcc(cap)
        self.fps = capture_fps(cap)
        self.frame_count = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
        self.packets = self.codec.upper() in MJPEG_FOURCCS and self._start_packets(cap)
        if self.packets:
            assert self._pending is not None
            first = decode_jpeg(self._pending.data)
            if first is None:
                raise SourceError(f"the first frame of {self._path} does not decode; re-encode it")
            self.full_size = (first.shape[1], first.shape[0])
        else:
            self.full_size = (
                int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            )
        self.reduce = reduce

    def _open(self) -> cv2.VideoCapture:
        return OpenCVSource.open_capture(
            self._path,
            cv2.CAP_FFMPEG,
            f"cannot read {self._path} as a video; give a file FFmpeg can decode (MP4, AVI, MKV)",
        )

    def _start_packets(self, cap: cv2.VideoCapture) -> bool:
        """Switch `cap` to raw packets; keep the first one. False (and reopen) if that fails."""
        if cap.set(cv2.CAP_PROP_FORMAT, -1):
            ok, data = cap.read()
            if ok and data is not None and data.size > 2 and data.reshape(-1)[:2].tobytes() == _SOI:
                self._pending = Packet(np.asarray(data, np.uint8).reshape(-1), 0, now_ns())
                self._index = 1
                return True
        # This OpenCV build could not hand out JPEG packets: decode with FFmpeg instead.
        cap.release()
        self._cap = self._open()
        return False

    def _rewind(self) -> bool:
        assert self._cap is not None
        self._cap.release()
        self._cap = self._open()
        return not self.packets or bool(self._cap.set(cv2.CAP_PROP_FORMAT, -1))

    def _read_raw(self) -> np.ndarray | None:
        """The next packet (packets mode) or decoded image; None at the end of the file."""
        with self._lock:
            for _attempt in range(2):
                if self._cap is None:
                    return None
                ok, data = self._cap.read()
                if self._closing:
                    self._cap.release()
                    self._cap = None
                    return None
                if ok and data is not None:
                    return data
                if not (self._loop and self._index > 0 and self._rewind()):
                    self._ended_early()
                    return None
            return None

    def _ended_early(self) -> None:
        """At the end: say so when the file gave fewer frames than its header promises.

        FFmpeg reads a truncated or damaged file up to the damage and then reports a normal
        end; without this a run over it would "succeed" with some or none of its frames.

        Raises:
            SourceError: not a single frame decoded.
        """
        if self._index == 0:
            raise SourceError(f"{self._path}: no frame of it decodes; the file is damaged or truncated")
        # Container counts can be estimates (from duration x rate): allow a little.
        if self.frame_count and self._index < 0.95 * self.frame_count - 1 and not self._warned_short:
            self._warned_short = True
            log.warning("%s ended after %d of its %d frames; the file may be truncated or damaged",
                        self._path, self._index, self.frame_count)

    def read_packet(self) -> Packet | None:
        if not self.packets:
            raise TypeError(f"{self.uri} is {self.codec}, not MJPEG: use read()")
        if self._pending is not None:
            packet, self._pending = self._pending, None
            return packet
        data = self._read_raw()
        if data is None:
            return None
        packet = Packet(np.asarray(data, np.uint8).reshape(-1), self._index, now_ns())
        self._index += 1
        return packet

    def read(self) -> Frame | None:
        if self.packets:
            return super().read()
        image = self._read_raw()
        if image is None:
            return None
        frame = Frame(as_bgr(image), self._index, now_ns(), self.uri)
        self._index += 1
        return frame

    def close(self) -> None:
        # As OpenCVSource.close: a read in progress releases the capture itself.
        self._closing = True
        if self._lock.acquire(blocking=False):
            try:
                if self._cap is not None:
                    self._cap.release()
                    self._cap = None
            finally:
                self._lock.release()
