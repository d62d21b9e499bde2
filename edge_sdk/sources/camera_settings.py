"""What may be asked of a camera (size, rate, pixel format), checked before any camera is opened.

The USB (`V4L2Source`) and CSI (`CsiSource`) cameras use the same checks, at open and in
check-config, so a value a driver would quietly clamp or overflow on (99999x99999, 1e308 fps,
"mjpg" for MJPG) is refused with the fix instead of giving a camera that runs in some other mode.
"""

from __future__ import annotations

from typing import Any

from edge_sdk.checks import check_number
from edge_sdk.errors import ConfigError
from edge_sdk.sources.synthetic import parse_size

#: Largest side a camera may be asked for: the V4L2 and libcamera size fields go further, but no
#: sensor these boards take reaches it (the largest, 64 MP ones, give 9152 x 6944).
MAX_CAMERA_SIDE = 16384
#: Fastest rate a camera may be asked for; high-speed sensor modes stay well under it.
MAX_CAMERA_FPS = 1000
#: Common V4L2 pixel formats: a lower-case spelling of one of these is a slip, since the codes
#: are case-sensitive ("mjpg" is no format any camera has; a few real codes do use lower case).
KNOWN_FOURCCS = ("MJPG", "YUYV", "UYVY", "YVYU", "H264", "HEVC", "NV12", "NV21", "YU12", "YV12",
                 "RGB3", "BGR3", "GREY", "RGBP", "Y16 ")


def camera_size(size: Any) -> tuple[int, int]:
    """`size` ("WxH" or a pair) as (width, height).

    Raises:
        ConfigError: malformed, not positive, or a side over `MAX_CAMERA_SIDE`.
    """
    try:
        width, height = parse_size(size)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad camera size {size!r}: {exc}") from None
    if max(width, height) > MAX_CAMERA_SIDE:
        raise ConfigError(f"camera size {width}x{height} is larger than any camera gives; use the "
                          f"sensor's size or less (at most {MAX_CAMERA_SIDE} a side)")
    return width, height


def camera_fps(fps: Any, *, optional: bool = False) -> None:
    """Refuse a rate no camera can be asked for (None passes when `optional`).

    Raises:
        ConfigError: not a number, not above 0, infinite or over `MAX_CAMERA_FPS`.
    """
    if fps is None and optional:
        return
    try:
        check_number("fps", fps, low=0, low_open=True, high=MAX_CAMERA_FPS)
    except (TypeError, ValueError) as exc:
        default = " (or leave it out for the camera's own rate)" if optional else ""
        raise ConfigError(f"{exc}{default}") from None


def camera_fourcc(fourcc: Any) -> None:
    """Refuse a pixel format code that is not 4 characters, or a known one in the wrong case.

    "" (or None) passes: it keeps the driver's format.

    Raises:
        ConfigError: what is wrong, naming the code meant where it is a case slip.
    """
    if fourcc is None:
        return
    if not isinstance(fourcc, str) or (fourcc and len(fourcc) != 4):
        raise ConfigError(f"fourcc must be 4 characters such as MJPG or YUYV, not {fourcc!r}")
    if fourcc not in KNOWN_FOURCCS and fourcc.upper() in KNOWN_FOURCCS:
        raise ConfigError(f"fourcc codes are case-sensitive: use {fourcc.upper()!r}, not {fourcc!r}")


__all__ = ["KNOWN_FOURCCS", "MAX_CAMERA_FPS", "MAX_CAMERA_SIDE", "camera_fourcc", "camera_fps",
           "camera_size"]
