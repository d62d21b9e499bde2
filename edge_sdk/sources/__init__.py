"""Frame sources behind one URI scheme.

`open_source(uri, **options)` picks the backend from the URI and opens it:

==============================  ==========================================================
``0``, ``1``, ``/dev/video0``,  USB camera through OpenCV's V4L2 backend (MJPG requested)
``v4l2:///dev/video0``
``clip.mp4``, ``file://...``    video file (MJPEG files are read as undecoded JPEGs)
``photo.jpg``, ``photos/``,     one image, a folder of images, or a glob of images
``'photos/*.jpg'``
``http(s)://host/stream``       MJPEG IP camera (multipart/x-mixed-replace)
``rtsp://host/stream``          RTSP camera through OpenCV's FFmpeg backend
``gst://PIPELINE``              GStreamer pipeline (needs OpenCV built with GStreamer)
``csi://0``                     Raspberry Pi camera (picamera2) or Jetson CSI camera
``test://?size=640x480&fps=30`` synthetic frames
==============================  ==========================================================

Every source hands out BGR uint8 `Frame`s stamped with `time.monotonic_ns()` at capture and
reports `size` (width, height), `fps` (0.0 if unknown) and `live`. Backends are imported only
when chosen; other packages add schemes through the ``edge_sdk.sources`` entry-point group.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from edge_sdk import registry
from edge_sdk.errors import ConfigError
from edge_sdk.protocols import Closing, FrameSource, OpenedSource
from edge_sdk.sources.base import BaseSource, JpegSource, Packet, PacketSource, file_path, uses_packets
from edge_sdk.sources.images import check_watchable, is_glob, is_image_path
from edge_sdk.types import Frame

__all__ = [
    "SCHEMES_HELP",
    "BaseSource",
    "JpegSource",
    "ManagedSource",
    "Packet",
    "PacketSource",
    "check_options",
    "check_uri",
    "open_source",
    "route",
    "source_class",
    "source_options",
    "uses_packets",
]

#: The accepted URI forms, as error messages list them.
SCHEMES_HELP = (
    "N or v4l2:///dev/videoN (USB camera), FILE.mp4 or file://PATH (video), an image, "
    "a folder or glob of images, http(s)://... (MJPEG), rtsp://..., gst://PIPELINE, csi://N, "
    "test://"
)

def _is_images(path: str) -> bool:
    return os.path.isdir(path) or is_glob(path) or is_image_path(path)


def route(uri: str, options: Mapping[str, Any] | None = None) -> str:
    """Return the registry name of the source that opens `uri` ("v4l2", "file", "image", ...).

    With `options`: a path not there yet, given a ``watch`` option, is a folder of images (by
    its name it would be a video file; it is the folder to watch, on a disk mounted later).

    Raises:
        ConfigError: empty URI, ``file://`` without a path, or unknown scheme (the message
            lists the accepted forms); ``watch`` on an existing file that is no image.
    """
    name = _route(uri)
    if name == "file" and options and "watch" in options:
        path = file_path(uri)
        if not os.path.exists(path):
            return "image"
        if options.get("watch"):
            check_watchable(path, loop=False)
    return name


def _route(uri: str) -> str:
    if not isinstance(uri, str):
        raise TypeError(f"a source URI is a str, not {type(uri).__name__}")
    text = uri.strip()
    if not text:
        raise ConfigError(f"empty source; give one of: {SCHEMES_HELP}")
    if text.isdigit() or text.startswith("/dev/video"):
        return "v4l2"
    scheme, sep, rest = text.partition("://")
    if not sep:
        return "image" if _is_images(text) else "file"
    scheme = scheme.lower()
    if scheme == "file":
        if not rest.strip():
            raise ConfigError(f"{text!r} names no file; expected file:///PATH, e.g. file:///data/clip.mp4")
        return "image" if _is_images(rest) else "file"
    # "file" and "image" are names of file backends; "image://" is no scheme of its own.
    if scheme != "image" and (
        scheme in registry.BUILTINS["sources"] or scheme in registry.names("sources")
    ):
        return scheme
    raise ConfigError(f"unknown source scheme {scheme + '://'!r}; use one of: {SCHEMES_HELP}")


def check_uri(uri: str) -> None:
    """Check a source URI's form as opening it would, without opening anything.

    For a config check: the scheme (as `route`), then the source class's own ``check_uri``
    where it has one (a network URI's host and port, a CSI camera's number; a plugin source
    may define one too). Whether the camera, file or stream is there is left to opening it.

    Raises:
        ConfigError: the URI is malformed; the message says the accepted form.
    """
    check = getattr(source_class(uri), "check_uri", None)
    if callable(check):
        check(uri.strip())


def source_class(uri: str) -> type[Any]:
    """Return the class that would open `uri` (imports its backend module)."""
    return registry.resolve("sources", route(uri))


def source_options(uri: str) -> list[str]:
    """Return the options `open_source(uri, ...)` accepts, e.g. to pass ``reduce`` only where
    it is understood."""
    return registry.accepted_options(source_class(uri))


#: Source options the Pipeline sets itself (from the model and the sinks), so no caller may.
PIPELINE_SET = ("reduce",)


def check_options(uri: str, options: Mapping[str, Any]) -> None:
    """Check options meant for the source `uri` names, as a config or the command line gives
    them to the Pipeline, without opening anything.

    Each name must be one the source takes and the Pipeline does not set itself; each value
    must be of a type the source's annotation allows, and pass the source class's own
    ``check_options(uri, options)`` where it has one (ranges, a camera size's "WxH" form,
    options that exclude each other). What only opening can tell is left to opening.

    Raises:
        ConfigError: an unknown or Pipeline-set option, or a value of the wrong type; the
            message lists the options this source takes.
    """
    name = route(uri, options)
    cls = registry.resolve("sources", name)
    taken = [o for o in registry.accepted_options(cls) if o not in PIPELINE_SET]
    for key in options:
        if key in PIPELINE_SET:
            raise ConfigError(f"{key} is chosen by the pipeline (from the model's input size and "
                              "the sinks); leave it out")
        if key not in taken:
            raise ConfigError(f"the {name} source takes no option {key!r}; it takes: "
                              f"{', '.join(taken) or 'none'}")
    problem = registry.option_type_problem(cls, options)
    if problem is not None:
        key, value, kinds = problem
        raise ConfigError(f"{key} = {value!r} must be {kinds} for the {name} source")
    # The values' ranges and combinations, where the source can tell without opening.
    check = getattr(cls, "check_options", None)
    if callable(check):
        check(uri.strip(), options)


class ManagedSource(Closing):
    """A plugin source made whole: ``with`` support, and `size`, `fps`, `live` where it has none.

    `open_source` wraps a plugin source that lacks any of these (plugins need implement only
    `FrameSource`, DESIGN.md), so its result always has them. Missing ones read as (0, 0),
    0.0 and False, the values a built-in source reports when it does not know; every other
    attribute is the plugin's own.
    """

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self.uri = source.uri

    @property
    def size(self) -> tuple[int, int]:
        width, height = getattr(self.source, "size", None) or (0, 0)
        return int(width), int(height)

    @property
    def fps(self) -> float:
        return float(getattr(self.source, "fps", 0.0) or 0.0)

    @property
    def live(self) -> bool:
        return bool(getattr(self.source, "live", False))

    def read(self) -> Frame | None:
        return self.source.read()

    def close(self) -> None:
        self.source.close()

    def __getattr__(self, name: str) -> Any:
        if name == "source":  # not set yet (copy, pickle): no endless lookup
            raise AttributeError(name)
        return getattr(self.source, name)


#: What a source needs to be handed out as it is.
_OPENED = ("__enter__", "__exit__", "size", "fps", "live")


def open_source(uri: str, **options: Any) -> OpenedSource:
    """Open the source `uri` names, with backend options (see docs/sources.md).

    The result has `size`, `fps` and `live` and is a context manager (``with`` closes it)
    whatever the backend; a plugin source that lacks any of these comes in a `ManagedSource`.

    Raises:
        ConfigError: malformed URI, unknown scheme, or an option this source does not take.
        TypeError: an option value of a type the source does not take (``fps="x"``).
        SourceError: the camera, file or stream is not there or cannot be read.
        BackendUnavailable: the backend needs a package that is not installed.
    """
    name = route(uri, options)
    source = registry.create("sources", name, uri.strip(), **options)
    if all(hasattr(source, attr) for attr in _OPENED):
        opened: OpenedSource = source
        return opened
    return ManagedSource(source)
