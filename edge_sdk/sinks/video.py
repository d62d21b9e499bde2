"""An annotated video file: what the overlay window would show, for headless runs."""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_sdk.checks import check_number
from edge_sdk.errors import SinkError
from edge_sdk.sinks.annotate import annotate
from edge_sdk.sinks.closable import ClosableSink
from edge_sdk.types import Frame, Prediction

log = logging.getLogger(__name__)

#: File extension -> FourCC OpenCV's FFmpeg writer can produce without extra codecs.
CODECS: dict[str, str] = {".avi": "MJPG", ".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v",
                          ".mkv": "MJPG"}

#: Frame rate written when neither the option nor the source gives one.
DEFAULT_FPS = 15.0

#: Longest stretch of time one frame is repeated for in a paced (live) recording, in seconds.
MAX_GAP_S = 10.0


class VideoSink(ClosableSink):
    """Writes each frame it gets, annotated with its prediction, to a video file.

    The writer opens on the first frame (its size is the video's size; later frames of another
    size, e.g. after a reconnect, are resized to it). Like the overlay it is a visual sink: in a
    live run a busy disk loses frames rather than slowing inference; with ``--every-frame``
    every frame is written. In a live run inference sees only some of the camera's frames, so
    each one is repeated until the next one's capture time: the file plays at the camera's pace
    (at the stored frame rate) instead of fast-forwarding.

    Args:
        path: Output file; the extension picks the codec (.avi: MJPEG, .mp4/.mov: MPEG-4 part 2,
            .mkv: MJPEG). Its folder must exist. An earlier recording there is kept, renamed
            with its time (``clip.20261201-213000.mp4``), when the first frame comes.
        fps: Frame rate stored in the file; default: the source's, else 15.
        codec: FourCC to use instead of the extension's.

    Raises:
        SinkError: unknown extension, or a folder that does not exist or is not writable.
        TypeError: `fps` is not a number or `codec` not a string.
        ValueError: a bad `fps` or `codec`.
    """

    lossless = False
    wants_frames = True
    name = "video"

    def __init__(
        self, *, path: str | os.PathLike[str], fps: float | None = None, codec: str | None = None
    ) -> None:
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if codec is None and ext not in CODECS:
            raise SinkError(
                f"cannot tell the video format of {self.path}: name it .avi, .mp4, .mov or .mkv"
            )
        if codec is not None and not isinstance(codec, str):
            raise TypeError(f"codec must be a FourCC string like 'MJPG', got {codec!r}")
        if codec is not None and len(codec) != 4:
            raise ValueError(f"codec must be a FourCC like 'MJPG', got {codec!r}")
        if not self.path.parent.is_dir():
            raise SinkError(f"cannot record to {self.path}: folder {self.path.parent} does not exist")
        self._check_writable()
        if fps is not None:
            fps = check_number("fps", fps, low=0, low_open=True)
        self.codec = codec or CODECS[ext]
        self.fps = fps
        self.frames = 0
        self._size: tuple[int, int] | None = None
        self._writer: cv2.VideoWriter | None = None
        self._pipeline: Any = None
        #: Live runs: write each frame until the file's clock reaches the next frame's capture
        #: time, so the recording plays at the camera's pace however few frames inference took.
        self._paced = False
        self._first_ns = 0
        self._written = 0

    def _check_writable(self) -> None:
        folder = self.path.parent
        if not os.access(folder, os.W_OK | os.X_OK):
            raise SinkError(f"cannot record to {self.path}: folder {folder} is not writable; choose "
                            "another folder or give the user running edge-classify write access to it")

    def attach(self, pipeline: Any) -> None:
        """Take the frame rate from the pipeline's source when none was given; pace the file
        by capture time unless every frame is processed (``keep_all``)."""
        self._pipeline = pipeline
        if self.fps is None and pipeline.fps > 0:
            self.fps = float(pipeline.fps)
        self._paced = not bool(getattr(pipeline, "keep_all", True))

    def _copies(self, timestamp_ns: int) -> int:
        """How many times to write the frame captured at `timestamp_ns` (at least once)."""
        if not self._paced:
            return 1
        if self._written == 0:
            self._first_ns = timestamp_ns
            return 1
        fps = self.fps or DEFAULT_FPS
        due = int((timestamp_ns - self._first_ns) * fps / 1e9) + 1
        # Bounded, so a clock jump or a long reconnect cannot make one call write for minutes.
        return max(1, min(due - self._written, int(MAX_GAP_S * fps)))

    def _keep_previous(self) -> None:
        """Move an earlier recording at `path` aside (named by its time) instead of overwriting it.

        A service restarted by systemd, or the same command run again, would otherwise replace
        the file, and a run killed before its first frame would leave a file with no video.
        """
        try:
            info = self.path.stat()
        except OSError:
            return
        if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
            return
        when = time.strftime("%Y%m%d-%H%M%S", time.localtime(info.st_mtime))
        kept = self.path.with_name(f"{self.path.stem}.{when}{self.path.suffix}")
        for n in range(1, 1000):
            if not kept.exists():
                break
            kept = self.path.with_name(f"{self.path.stem}.{when}-{n}{self.path.suffix}")
        try:
            self.path.rename(kept)
        except OSError as exc:
            log.warning("cannot keep the earlier recording %s (%s); overwriting it", self.path, exc)
            return
        log.info("kept the earlier recording as %s", kept)

    def _open(self, width: int, height: int) -> cv2.VideoWriter:
        fps = self.fps or DEFAULT_FPS
        self._keep_previous()
        writer = cv2.VideoWriter(
            str(self.path), cv2.CAP_FFMPEG, cv2.VideoWriter.fourcc(*self.codec), fps,
            (width, height),
        )
        if not writer.isOpened():
            self._check_writable()  # the folder may have changed since the start
            if self.path.exists() and not os.access(self.path, os.W_OK):
                raise SinkError(f"cannot record to {self.path}: the file is not writable; remove it, "
                                "or choose another file name")
            # OpenCV says no more than that; with the folder writable, the codec is what is left.
            other = "" if self.path.suffix.lower() == ".avi" else "try a .avi file, or "
            raise SinkError(
                f"OpenCV cannot write {self.codec} video to {self.path}; {other}check the disk has "
                "space and this OpenCV's FFmpeg has the codec"
            )
        log.info("recording %dx%d at %.1f fps to %s", width, height, fps, self.path)
        self._size = (width, height)
        return writer

    def publish(self, prediction: Prediction, frame: Frame | None) -> None:
        """Write `frame` (annotated), opening the file on the first one.

        Raises:
            SinkError: the sink is closed, or the file cannot be written (the message says why).
        """
        self._refuse_if_closed(f"the video sink recording to {self.path}")
        if frame is None:
            return
        image = frame.image
        if self._writer is None:
            self._writer = self._open(image.shape[1], image.shape[0])
        assert self._size is not None
        if (image.shape[1], image.shape[0]) != self._size:
            image = np.asarray(cv2.resize(image, self._size, interpolation=cv2.INTER_AREA))
        fps = self._pipeline.metrics.rates()[1] if self._pipeline is not None else None
        annotated = annotate(image, prediction, fps=fps)
        for _ in range(self._copies(frame.timestamp_ns)):
            self._writer.write(annotated)
            self._written += 1
        self.frames += 1

    def close(self) -> None:
        self._closed = True
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.release()
            log.info("wrote %d frames (%d predictions) to %s", self._written, self.frames, self.path)
