"""`csi://N`: the board's camera connector, whichever board this is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge_sdk.errors import ConfigError
from edge_sdk.protocols import FrameSource
from edge_sdk.sources.base import BaseSource
from edge_sdk.sources.camera_settings import camera_fps, camera_size
from edge_sdk.sources.jetson import is_jetson, nvargus_pipeline
from edge_sdk.types import Frame


def csi_number(uri: str) -> int:
    """Return N of ``csi://N`` (``csi://`` alone is camera 0).

    Raises:
        ConfigError: anything else after ``csi://``.
    """
    rest = uri[len("csi://") :] if uri.startswith("csi://") else uri
    rest = rest.strip("/")
    if rest == "":
        return 0
    if not rest.isdigit():
        raise ConfigError(f"bad CSI camera {uri!r}; expected csi://N, e.g. csi://0")
    return int(rest)


class CsiSource(BaseSource):
    """A CSI camera: picamera2 on a Raspberry Pi, the nvarguscamerasrc pipeline on a Jetson.

    It only picks and wraps the backend; `backend` is the wrapped source.
    """

    @staticmethod
    def check_uri(uri: str) -> None:
        """Check the URI's form (``csi://N``) without opening a camera.

        Raises:
            ConfigError: anything else after ``csi://``.
        """
        csi_number(uri)

    @staticmethod
    def check_options(uri: str, options: Mapping[str, Any]) -> tuple[tuple[int, int], float]:
        """Refuse option values opening would refuse, without the camera (for check-config).

        Returns:
            The size as (width, height), and the rate.

        Raises:
            ConfigError: a malformed or oversized size, a rate out of range, or a flip outside
                0-7.
        """
        size = camera_size(options.get("size", (1280, 720)))
        fps = options.get("fps", 30.0)
        camera_fps(fps)
        flip = options.get("flip", 0)
        if isinstance(flip, bool) or not isinstance(flip, int) or not 0 <= flip <= 7:
            raise ConfigError(f"flip must be a flip-method from 0 to 7 (2 turns the image upside "
                              f"down), not {flip!r}")
        return size, float(fps)

    def __init__(
        self,
        uri: str = "csi://0",
        *,
        size: tuple[int, int] | str = (1280, 720),
        fps: float = 30.0,
        flip: int = 0,
        jetson: bool | None = None,
    ) -> None:
        """Open the camera.

        Args:
            uri: ``csi://N``.
            size: (width, height) or "WxH".
            fps: Frame rate to ask for.
            flip: Jetson only: nvvidconv flip-method (0-7; 2 turns the image upside down).
            jetson: Force the Jetson (True) or picamera2 (False) path; None detects the board.

        Raises:
            ConfigError: malformed URI, size, rate or flip.
            BackendUnavailable: picamera2 missing (Pi) or OpenCV without GStreamer (Jetson).
            SourceError: no camera there.
        """
        number = csi_number(uri)
        wanted, fps = self.check_options(uri, {"size": size, "fps": fps, "flip": flip})
        self.uri = uri
        self.live = True
        backend: FrameSource
        if is_jetson() if jetson is None else jetson:
            from edge_sdk.sources.gstreamer import GStreamerSource

            pipeline = nvargus_pipeline(number, wanted, fps, flip)
            backend = GStreamerSource(f"gst://{pipeline}")
        else:
            from edge_sdk.sources.pi_camera import Picamera2Source

            backend = Picamera2Source(uri, camera=number, size=wanted, fps=fps)
        self.backend = backend
        self.size = tuple(getattr(backend, "size", wanted))  # type: ignore[assignment]
        self.fps = float(getattr(backend, "fps", 0.0))

    def read(self) -> Frame | None:
        frame = self.backend.read()
        # picamera2's rate is measured as frames arrive: keep reporting the latest figure.
        self.fps = float(getattr(self.backend, "fps", self.fps))
        if frame is None or frame.source == self.uri:
            return frame
        return Frame(frame.image, frame.index, frame.timestamp_ns, self.uri)

    def close(self) -> None:
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()
