"""A desktop window showing the live frames with the top-k labels, FPS and latency drawn on."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import cv2

from edge_sdk.sinks.annotate import annotate
from edge_sdk.sinks.closable import ClosableSink
from edge_sdk.types import Frame, Prediction

log = logging.getLogger(__name__)

#: Keys that close the window and stop the run: q, Q, Esc.
QUIT_KEYS = frozenset({ord("q"), ord("Q"), 27})


def display_problem() -> str | None:
    """Return why no window can be shown here, or None if a display looks reachable.

    OpenCV's Qt and GTK backends abort the whole process (not raise) when they cannot reach
    a display, so the check is done first, without them: the environment must name an X11 or
    Wayland display, and for a local one its socket must accept a connection.
    """
    wayland = os.environ.get("WAYLAND_DISPLAY")
    if wayland:
        runtime_dir = os.environ.get("XDG_RUNTIME_DIR", "")
        path = wayland if os.path.isabs(wayland) else os.path.join(runtime_dir, wayland)
        if _can_connect(path):
            return None
    display = os.environ.get("DISPLAY")
    if not display:
        if wayland:
            return f"the Wayland display {wayland} is not reachable and DISPLAY is not set"
        return "no display (DISPLAY and WAYLAND_DISPLAY are not set)"
    host, _, rest = display.rpartition(":")
    if host in ("", "unix"):
        number = rest.split(".")[0]
        if not _can_connect(f"/tmp/.X11-unix/X{number}"):
            return f"the X display {display} is not reachable"
    return None


def _can_connect(path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            sock.connect(path)
        return True
    except OSError:
        return False


class OverlaySink(ClosableSink):
    """Shows annotated frames in an OpenCV window; press q or Esc (or close it) to stop.

    When there is no display, or this OpenCV build has no GUI, the sink switches itself off
    with one logged note and does nothing: a headless run never crashes because of it. Switched
    off, it does not want frames, so the pipeline can decode at reduced size.

    Args:
        title: Window title.
        enabled: False to switch it off from the start (``--no-display``).
    """

    lossless = False
    name = "overlay"

    def __init__(self, *, title: str = "edge-classify", enabled: bool = True) -> None:
        self.title = title
        self._pipeline: Any = None
        self._window = False
        #: Frames drawn in the window so far.
        self.frames_shown = 0
        self.enabled = enabled
        if enabled:
            problem = display_problem()
            if problem is not None:
                self._switch_off(problem)

    @property
    def wants_frames(self) -> bool:
        return self.enabled

    def _switch_off(self, why: str) -> None:
        self.enabled = False
        log.warning("overlay window off: %s; use --web to watch from a browser, or --record FILE",
                    why)

    def attach(self, pipeline: Any) -> None:
        """Remember the pipeline, for its frame rate and to stop it on q / Esc."""
        self._pipeline = pipeline

    def publish(self, prediction: Prediction, frame: Frame | None) -> None:
        """Draw `frame` in the window (nothing while switched off).

        Raises:
            SinkError: the sink is closed.
        """
        self._refuse_if_closed("the overlay window sink")
        if not self.enabled or frame is None:
            return
        fps = None
        if self._pipeline is not None:
            fps = self._pipeline.metrics.rates()[1]
        image = annotate(frame.image, prediction, fps=fps)
        try:
            if not self._window:
                cv2.namedWindow(self.title, cv2.WINDOW_AUTOSIZE)
                self._window = True
            cv2.imshow(self.title, image)
            self.frames_shown += 1
            key = cv2.waitKey(1) & 0xFF
            visible = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE)
        except cv2.error as exc:
            # Typically "The function is not implemented": an OpenCV build without a GUI.
            self._switch_off(f"OpenCV cannot open a window ({str(exc).strip().splitlines()[-1]})")
            return
        if key in QUIT_KEYS or visible < 1:
            log.info("overlay window closed; stopping")
            if self._pipeline is not None:
                self._pipeline.request_stop()

    def close(self) -> None:
        self._closed = True
        if self._window:
            self._window = False
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)
            except cv2.error:
                pass
