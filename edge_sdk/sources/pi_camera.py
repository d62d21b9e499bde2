"""Raspberry Pi cameras through picamera2 (libcamera), imported only when chosen."""

from __future__ import annotations

import collections
import importlib
from typing import Any

import numpy as np

from edge_sdk.errors import SourceError
from edge_sdk.registry import missing_package
from edge_sdk.sources.base import BaseSource, now_ns
from edge_sdk.types import Frame


class Picamera2Source(BaseSource):
    """A Raspberry Pi camera module (CSI).

    It configures a video stream in picamera2's "RGB888" format. libcamera names formats after
    the order of a little-endian 24-bit word, so "RGB888" is stored B, G, R in memory: exactly
    OpenCV's BGR, and the frames need no conversion. `fps` is measured from frame arrivals.
    """

    def __init__(
        self,
        uri: str = "csi://0",
        *,
        camera: int = 0,
        size: tuple[int, int] = (1280, 720),
        fps: float = 30.0,
    ) -> None:
        """Start the camera.

        Args:
            uri: The URI to report (``csi://N``).
            camera: picamera2's camera number.
            size: (width, height) of the stream.
            fps: Frame rate to ask the sensor for.

        Raises:
            BackendUnavailable: picamera2 is not installed.
            SourceError: no camera with that number, or it is busy.
        """
        try:
            module = importlib.import_module("picamera2")
        except ImportError as exc:
            raise missing_package(exc, "the csi:// source") from exc
        self.uri = uri
        self.live = True
        self._arrivals: collections.deque[int] = collections.deque(maxlen=30)
        self._index = 0
        self._camera: Any = None
        try:
            camera_obj = module.Picamera2(camera)
        except (IndexError, RuntimeError) as exc:
            # picamera2 raises IndexError for a camera number it does not list.
            raise SourceError(
                f"no Raspberry Pi camera at {uri} ({exc}); check the ribbon cable and "
                "`rpicam-hello --list-cameras`, and that no other program holds the camera"
            ) from exc
        self._camera = camera_obj
        try:
            config = camera_obj.create_video_configuration(
                main={"size": tuple(size), "format": "RGB888"},
                controls={"FrameRate": float(fps)},
            )
            camera_obj.configure(config)
            camera_obj.start()
        except Exception as exc:
            self.close()
            raise SourceError(f"cannot start the camera at {uri}: {exc}") from exc
        self.size = (int(size[0]), int(size[1]))
        self.fps = 0.0

    def read(self) -> Frame | None:
        camera = self._camera
        if camera is None:
            return None
        try:
            array = camera.capture_array("main")
        except Exception as exc:
            if self._camera is None:  # closed while waiting
                return None
            raise SourceError(f"the camera at {self.uri} failed: {exc}") from exc
        stamp = now_ns()
        width, height = self.size
        # Drop any row padding and a fourth (X/alpha) byte, should the stream have them.
        image = np.ascontiguousarray(array[:height, :width, :3], dtype=np.uint8)
        self._arrivals.append(stamp)
        if len(self._arrivals) >= 2 and self._arrivals[-1] > self._arrivals[0]:
            self.fps = (len(self._arrivals) - 1) * 1e9 / (self._arrivals[-1] - self._arrivals[0])
        frame = Frame(image, self._index, stamp, self.uri)
        self._index += 1
        return frame

    def close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            try:
                camera.stop()
            finally:
                camera.close()
