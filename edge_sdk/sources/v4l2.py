"""USB cameras through OpenCV's V4L2 backend (`0`, `/dev/video0`, `v4l2:///dev/video0`)."""

from __future__ import annotations

import logging
import os

import cv2

from edge_sdk.errors import ConfigError, SourceError
from edge_sdk.sources.opencv import OpenCVSource
from edge_sdk.sources.synthetic import parse_size

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


class V4L2Source(OpenCVSource):
    """A USB (UVC) camera.

    It asks the camera for MJPG (`fourcc`), which most webcams need for 720p at 30 fps over USB
    2 (raw YUYV fits only about 10 fps there), and for the requested size and rate; `size` and
    `fps` then report what the driver actually granted.
    """

    def __init__(
        self,
        uri: str,
        *,
        size: tuple[int, int] | str | None = None,
        fps: float | None = None,
        fourcc: str = "MJPG",
    ) -> None:
        """Open the camera.

        Args:
            uri: ``N``, ``/dev/videoN`` or ``v4l2:///dev/videoN``.
            size: (width, height) or "WxH" to ask for; None keeps the driver's default.
            fps: Frame rate to ask for; None keeps the driver's default.
            fourcc: Pixel format to ask for ("MJPG", "YUYV", ...); "" keeps the default.

        Raises:
            ConfigError: malformed URI, size or fourcc.
            SourceError: no camera at that path, no permission, or it cannot be opened.
        """
        device = v4l2_device(uri)
        try:
            wanted = parse_size(size) if size is not None else None
        except ValueError as exc:
            raise ConfigError(f"bad camera size {size!r}: {exc}") from exc
        if fourcc and len(fourcc) != 4:
            raise ConfigError(f"fourcc must be 4 characters such as MJPG or YUYV, not {fourcc!r}")
        if not os.path.exists(device):
            raise SourceError(f"no camera at {device}; try --source FILE")
        if not os.access(device, os.R_OK | os.W_OK):
            raise SourceError(
                f"no permission to open {device}; add yourself to the video group "
                "(sudo usermod -aG video $USER, then log in again)"
            )
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
        super().__init__(uri, cap, live=True)
        if wanted is not None and self.size != wanted:
            log.warning("%s gives %dx%d, not the %dx%d asked for", device, *self.size, *wanted)
