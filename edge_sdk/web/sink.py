"""WebSink: the pipeline's side of the web view (registered as the sink "web").

`publish` runs in the sink's own worker thread. It always updates the latest prediction (a few
hundred bytes of JSON, which wakes the event streams); it encodes the annotated frame as JPEG
only while at least one MJPEG viewer is connected, once per frame however many there are, and
at most `stream_fps` times a second. Viewers read the newest JPEG from a mailbox, so a slow
viewer skips frames and never holds up the sink.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

import cv2
import numpy as np

from edge_sdk.checks import check_int, check_number
from edge_sdk.errors import SinkError
from edge_sdk.metrics import Metrics, RateMeter
from edge_sdk.sinks.annotate import annotate
from edge_sdk.sinks.closable import ClosableSink
from edge_sdk.types import Frame, Image, Prediction
from edge_sdk.web.access import DEFAULT_BIND, AccessPolicy, BindAddress, read_token
from edge_sdk.web.latest import LatestValue
from edge_sdk.web.metrics import PrometheusExport
from edge_sdk.web.page import index_html
from edge_sdk.web.server import WebServer

log = logging.getLogger(__name__)

#: How often the pipeline-wide rates shown on the page are refreshed.
_RATES_EVERY_S = 1.0

#: Niceness added to the sink's worker thread inside a pipeline: on a busy CPU the view yields
#: to inference (a viewer gets fewer frames, the classifier keeps its rate).
WORKER_NICE = 10


class WebSink(ClosableSink):
    """Serves a live view of the pipeline over HTTP; see docs/web.md.

    Routes: ``/`` (page), ``/stream.mjpg``, ``/api/prediction``, ``/api/events``, ``/metrics``,
    ``/healthz``. Every route but ``/healthz`` needs the token when one is set.

    Args:
        bind: ``ADDR:PORT`` to listen on; port 0 picks a free one (see `url`). Any address but
            loopback needs `token`/`token_file` or `insecure`.
        token: The access token.
        token_file: A file holding the token (e.g. a systemd credential); preferred over
            `token`, which would sit in a config file or the process list.
        insecure: Allow a non-loopback bind without a token.
        quality: JPEG quality, 1-100.
        max_width: Frames wider than this are scaled down before annotating and encoding
            (0: full size). Smaller frames cost the board less and the network less.
        stream_fps: At most this many JPEG frames per second (0: every frame the sink gets).
        max_streams: Most video and event streams open at once; more get 503.

    Raises:
        ConfigError: a bad bind address or token option, or a non-loopback bind without a token.
        SinkError: the address is in use or cannot be bound.
        TypeError: an option of the wrong type (``quality="80"``, ``bind=None``).
        ValueError: an option out of range.
    """

    name = "web"
    lossless = False
    #: Always True: the pipeline reads it once at start, and a viewer may connect at any time.
    #: Frames are shared, not copied, so getting them costs nothing while nobody watches, and
    #: `frame_width` lets the pipeline decode them no wider than the stream shows them.
    wants_frames = True

    def __init__(
        self,
        *,
        bind: str = DEFAULT_BIND,
        token: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        quality: int = 80,
        max_width: int = 640,
        stream_fps: float = 15.0,
        max_streams: int = 16,
    ) -> None:
        if not isinstance(bind, str):
            raise TypeError(f"bind must be a string 'ADDR:PORT' (e.g. {DEFAULT_BIND!r}), got {bind!r}")
        check_int("quality", quality, low=1, high=100)
        check_int("max_width", max_width, low=0)
        stream_fps = check_number("stream_fps", stream_fps, low=0, high=1000)
        if 0 < stream_fps < 0.01:  # its period would overflow the clock it is timed with
            raise ValueError(f"stream_fps must be 0 (every frame) or at least 0.01, got {stream_fps}")
        check_int("max_streams", max_streams, low=1)
        address = BindAddress.parse(bind)
        self.policy = AccessPolicy(address, read_token(token, token_file), insecure=insecure)
        self.quality = quality
        self.max_width = max_width
        self.stream_fps = stream_fps
        self.jpegs: LatestValue[bytes] = LatestValue(forget_when_unwatched=True)
        self.predictions: LatestValue[bytes] = LatestValue()
        self._metrics = Metrics()
        self._attached = False
        self._rate = RateMeter()
        self._rates: dict[str, float] = {}
        self._rates_at = 0.0
        self._next_jpeg_ns = 0
        self._published = 0
        self._last_publish = 0.0
        self._jpeg_frames = 0
        self._jpeg_seconds = 0.0
        self._renice = False
        self._closed = False
        self._close_lock = threading.Lock()
        self._export = PrometheusExport(self._snapshot, self._own_figures)
        self._server = WebServer(address, self, max_streams=max_streams)
        log.info("web view at %s%s", self.url,
                 " (add ?token=TOKEN)" if self.policy.needs_token else "")

    # -- what the pipeline calls --------------------------------------------------------------

    @property
    def url(self) -> str:
        """The page's address (with the real port when `bind` asked for port 0)."""
        return self._server.url

    @property
    def address(self) -> BindAddress:
        return self._server.address

    @property
    def frame_width(self) -> int:
        """The widest frame the stream uses (`max_width`; 0: full size)."""
        return self.max_width

    @property
    def viewers(self) -> int:
        """MJPEG viewers connected now."""
        return self.jpegs.readers

    def attach(self, pipeline: Any) -> None:
        """Use the pipeline's metrics for the page's rates and for ``/metrics``.

        Called by `Pipeline.start`. From then on `publish` is expected on the worker thread the
        pipeline made for this sink, which the first `publish` lowers in priority (nice +10).
        """
        metrics = getattr(pipeline, "metrics", None)
        if isinstance(metrics, Metrics):
            self._metrics = metrics
            self._attached = True
        # publish() will run in a worker thread of the pipeline's own, made for this sink.
        self._renice = True

    def publish(self, prediction: Prediction, frame: Frame | None) -> None:
        """Make `prediction` the latest and, while someone watches, encode its frame.

        Raises:
            SinkError: the sink is closed (its server is stopped).
        """
        self._refuse_if_closed(f"the web view at {self.url}")
        if self._renice:
            self._renice = False
            lower_thread_priority(WORKER_NICE)
        now = time.monotonic()
        self._rate.add(1, now)
        if not self._attached:
            self._metrics.record_prediction(prediction.timings)
        payload = prediction.to_dict()
        payload["rates"] = self._current_rates(now)
        self.predictions.put(json.dumps(payload, separators=(",", ":")).encode())
        self._published += 1
        self._last_publish = now
        if frame is not None and self.jpegs.readers > 0 and self._jpeg_due():
            t0 = time.perf_counter()
            jpeg = self.encode(frame.image, prediction)
            self._jpeg_seconds += time.perf_counter() - t0
            self._jpeg_frames += 1
            self.jpegs.put(jpeg)

    def encode(self, image: Image, prediction: Prediction) -> bytes:
        """Return the annotated frame as JPEG bytes (scaled to `max_width` first).

        Raises:
            SinkError: OpenCV could not encode the image.
        """
        height, width = image.shape[:2]
        scaled = bool(self.max_width) and width > self.max_width
        if scaled:
            size = (self.max_width, max(1, round(height * self.max_width / width)))
            image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)
        # Unscaled, the frame is shared with other sinks: annotate draws on a copy.
        image = annotate(image, prediction, fps=self._rates.get("fps"), copy=not scaled)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise SinkError("web: OpenCV could not encode a JPEG; reinstall opencv-python")
        return bytes(buf)

    def close(self) -> None:
        """End every stream and stop the server (idempotent)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self.jpegs.close()
        self.predictions.close()
        self._server.close()

    # -- what the server shows ----------------------------------------------------------------

    def page(self) -> bytes:
        return index_html()

    def metrics(self) -> tuple[bytes, str]:
        return self._export.render(), self._export.content_type

    def health(self) -> dict[str, Any]:
        """Liveness for probes (served without a token: it shows no image nor label)."""
        age = round(time.monotonic() - self._last_publish, 3) if self._published else None
        return {"status": "ok", "predictions": self._published, "last_prediction_age_s": age}

    # -- internals ----------------------------------------------------------------------------

    def _jpeg_due(self) -> bool:
        if not self.stream_fps:
            return True
        now = time.monotonic_ns()
        if now < self._next_jpeg_ns:
            return False
        period = int(1e9 / self.stream_fps)
        # Keep the cadence while frames flow; after a pause start afresh rather than bursting.
        late = now - self._next_jpeg_ns
        self._next_jpeg_ns = self._next_jpeg_ns + period if late < period else now + period
        return True

    def _current_rates(self, now: float) -> dict[str, float]:
        if self._attached:
            if now - self._rates_at >= _RATES_EVERY_S:
                snap = self._metrics.snapshot()
                self._rates = {"fps": snap["fps_out"], "fps_in": snap["fps_in"],
                               "dropped": snap["frames_dropped"]}
                self._rates_at = now
        else:
            self._rates = {"fps": round(self._rate.rate(now), 2)}
        return self._rates

    def _snapshot(self) -> dict[str, Any]:
        return self._metrics.snapshot()

    def _own_figures(self) -> dict[str, tuple[str, float, str]]:
        return {
            "web_viewers": ("gauge", self.jpegs.readers, "MJPEG viewers connected"),
            "web_event_clients": ("gauge", self.predictions.readers,
                                  "Server-sent-event clients connected"),
            "web_jpeg_frames": ("counter", self._jpeg_frames, "Frames encoded for the stream"),
            "web_jpeg_encode_seconds": ("counter", self._jpeg_seconds,
                                        "Time spent annotating and encoding stream frames"),
        }


def lower_thread_priority(increment: int) -> None:
    """Add `increment` to the calling thread's niceness (Linux: per thread; elsewhere nothing).

    On Linux, PRIO_PROCESS with a thread id changes only that thread, not the process.
    """
    if not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
    except OSError as exc:
        log.debug("web: cannot lower the sink thread's priority: %s", exc)
