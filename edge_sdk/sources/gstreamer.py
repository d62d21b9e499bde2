"""`gst://PIPELINE`: any GStreamer pipeline ending in an appsink, through OpenCV."""

from __future__ import annotations

import functools
import re

import cv2

from edge_sdk.errors import BackendUnavailable, ConfigError
from edge_sdk.sources.opencv import OpenCVSource

#: Appended to a pipeline that does not end in an appsink: BGR for OpenCV, newest buffer only.
APPSINK = "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"


@functools.cache
def opencv_has_gstreamer() -> bool:
    """True if this OpenCV build includes the GStreamer video backend."""
    match = re.search(r"GStreamer:\s*(\S+)", cv2.getBuildInformation())
    return bool(match and match.group(1).upper() != "NO")


class GStreamerSource(OpenCVSource):
    """Frames from a GStreamer pipeline, e.g. ``gst://v4l2src ! videoconvert ! appsink``.

    A pipeline without an ``appsink`` gets one appended that converts to BGR and keeps only the
    newest buffer.
    """

    def __init__(self, uri: str, *, live: bool = True) -> None:
        """Start the pipeline.

        Args:
            uri: ``gst://`` followed by the pipeline, as gst-launch-1.0 takes it.
            live: False for a finite pipeline (filesrc ...): its end is then final.

        Raises:
            ConfigError: empty pipeline.
            BackendUnavailable: OpenCV was built without GStreamer (opencv-python from PyPI is).
            SourceError: GStreamer cannot start the pipeline.
        """
        pipeline = uri[len("gst://") :].strip() if uri.startswith("gst://") else uri.strip()
        if not pipeline:
            raise ConfigError(f"empty GStreamer pipeline {uri!r}; expected gst://ELEMENT ! ... ! appsink")
        if not opencv_has_gstreamer():
            raise BackendUnavailable(
                "this OpenCV was built without GStreamer (opencv-python from PyPI is); use the "
                "system one: sudo apt install python3-opencv gstreamer1.0-plugins-good, and a "
                "venv made with --system-site-packages"
            )
        if "appsink" not in pipeline:
            pipeline = f"{pipeline} ! {APPSINK}"
        self.pipeline = pipeline
        cap = self.open_capture(
            pipeline,
            cv2.CAP_GSTREAMER,
            f"GStreamer could not start {pipeline!r}; try it with gst-launch-1.0 to see why",
            quiet=False,  # OpenCV's log has GStreamer's reason (a missing element, ...)
        )
        super().__init__(uri, cap, live=live)
