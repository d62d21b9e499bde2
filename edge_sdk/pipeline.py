"""Pipeline: source -> newest-frame slot -> classifier -> sinks, each stage in its own thread.

Threads::

    capture thread      reads the source continuously into a newest-frame slot (edge_sdk.capture)
    inference thread    takes the newest frame, classifies it, stamps its age, fans it out
    one thread per sink publishes from its own bounded queue (edge_sdk.sinks.worker)

Capture never waits for inference and inference never works on a stale frame; a slow sink
never slows inference (visual sinks lose their oldest queued frame, lossless sinks such as
MQTT refuse overflow with a counted, logged warning). With ``keep_all=True`` (files processed
whole) nothing is dropped anywhere: the slot and every sink queue make their producer wait.

SDK use::

    from edge_sdk import Classifier, Pipeline
    from edge_sdk.sinks.jsonl import JsonlSink

    clf = Classifier.from_model("squeezenet1.1")
    with Pipeline("video.mp4", clf, [JsonlSink(path="out.jsonl")], max_frames=100) as p:
        for prediction in p:                 # predictions as they are published
            print(prediction.label)
    print(p.metrics.snapshot()["fps_out"])

or ``Pipeline(...).run()`` (blocks until the source ends, `max_frames`, or `stop`), or a
callback: ``Pipeline(..., on_prediction=fn)`` calls ``fn(prediction)`` from its own worker.
Predictions are kept for a ``for`` loop from the moment a ``with`` block starts the pipeline, so
a loop that begins late misses nothing (see `Pipeline`, ``iterate``, for the exact rule).

API for sink authors (MQTT, web):

- A sink is any object with ``publish(prediction, frame)`` and ``close()``. Optional
  attributes: ``lossless = True`` (ordered FIFO, overflow counted and logged, never silently
  dropped), ``wants_frames = False`` (``frame`` is always None; when no sink wants frames the
  pipeline decodes JPEG sources at reduced size), ``frame_width`` (the widest frame the sink
  uses, e.g. the web view's stream width: frames are then decoded no wider than the widest
  such sink needs; absent or 0 means full size), ``name`` (used in metrics and logs),
  ``closed`` (True once closed: a Pipeline refuses such a sink, since it would take nothing), and
  ``attach(pipeline)``, called once by `Pipeline.start` before any publish, e.g. to call
  ``pipeline.metrics.register_gauge("mqtt_queue", fn)`` or read ``pipeline.fps``.
- A ``publish`` that fails for a foreseeable reason should raise `SinkError` with a message
  naming the fix (an `OSError` is fine too): the pipeline logs it in one line, counts it and
  goes on; `Pipeline.sink_failures` reports it after the run.
- `Pipeline.metrics` is the run's `edge_sdk.metrics.Metrics`; ``snapshot()`` gives the dict
  described there. `Pipeline.request_stop` is safe from any thread and from signal handlers.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from edge_sdk.capture import Backoff, Capture
from edge_sdk.checks import check_int, check_number
from edge_sdk.classifier import Classifier
from edge_sdk.errors import BackendError, EdgeSDKError, SourceContractError, SourceError
from edge_sdk.metrics import Metrics
from edge_sdk.postprocess import Smoother, classify, make_smoother
from edge_sdk.protocols import FrameSource
from edge_sdk.sinks.worker import BoundedQueue, QueueClosed, SinkFailure, SinkWorker, sink_name
from edge_sdk.sources import ManagedSource
from edge_sdk.sources.base import BaseSource, hide_password
from edge_sdk.types import Frame, Prediction
from edge_sdk.wording import many

log = logging.getLogger(__name__)

#: JPEG reduced-decode factors libjpeg offers.
REDUCE_FACTORS = (8, 4, 2, 1)

#: The inference thread gives up after this many frames in a row fail to classify.
MAX_CONSECUTIVE_ERRORS = 10

#: Default `Pipeline` stall: seconds a live source's read may block before it is reopened. Above
#: the HTTP and RTSP sources' own 5 s timeouts (they report first) and any camera frame interval.
STALL_S = 10.0

#: Predictions buffered for an iterating consumer (newest-wins unless keep_all).
ITERATOR_CAPACITY = 8

#: Why a finished Pipeline refuses to run again.
_RUNS_ONCE = "a Pipeline runs once; make a new one to run again"

#: With keep_all, predictions kept without making inference wait for a ``for`` loop that has
#: not begun yet (a ``with`` block doing something else first); as many as a lossless sink's queue.
PENDING_CAPACITY = 1024


class CallbackSink:
    """Adapts ``on_prediction(prediction)`` to the Sink interface (lossless, no frames)."""

    lossless = True
    wants_frames = False
    name = "callback"

    def __init__(self, fn: Callable[[Prediction], Any]) -> None:
        self._fn = fn

    def publish(self, prediction: Prediction, frame: Frame | None) -> None:
        self._fn(prediction)

    def close(self) -> None:
        """Nothing to release."""


def choose_reduce(
    size: tuple[int, int], input_size: tuple[int, int], resize_shorter: int, min_width: int = 0
) -> int:
    """Return the largest JPEG reduce factor that keeps enough pixels for the model and sinks.

    The decoded image (libjpeg rounds each side up) must keep its shorter side at or above
    `resize_shorter` (the card's "resize shorter side to" step) and each side at or above the
    model input, so reduced decoding only skips pixels the resize would have thrown away; and
    its width at or above `min_width`, what the sinks that show frames scale them to anyway.

    Args:
        size: (width, height) of the full-size frames; (0, 0) if unknown (gives 1).
        input_size: The model's (height, width).
        resize_shorter: The card's resize_shorter (0: the image is resized whole).
        min_width: The widest frame a sink needs (0: no sink needs frames).
    """
    width, height = size
    if width <= 0 or height <= 0:
        return 1
    for factor in REDUCE_FACTORS:
        w, h = math.ceil(width / factor), math.ceil(height / factor)
        if min(w, h) >= resize_shorter and h >= input_size[0] and w >= max(input_size[1], min_width):
            return factor
    return 1


class WrappedSource:
    """Base of the pipeline's source wrappers: `close` and every attribute it does not define
    (`fps`, `live`, `skipped`, ...) are the wrapped source's."""

    def __init__(self, source: FrameSource) -> None:
        self.inner = source
        self.uri = source.uri

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not found here.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


class DownscaledSource(WrappedSource):
    """Wraps a source of decoded frames so each frame comes out 1/`factor` the size.

    For sources that cannot decode at reduced size (H.264 files and streams, raw cameras),
    when no sink wants full-size frames: the capture thread shrinks each frame with an exact
    integer-factor area average (OpenCV's fast path, ~0.5 ms for 720p), which leaves the
    inference thread a small image to crop and resize. It is the counterpart of reduced JPEG
    decoding and is chosen by the same rule (`choose_reduce`), so the model still gets an
    image downscaled from more pixels than it needs.

    Other attributes (`fps`, `live`, ...) are the wrapped source's.
    """

    def __init__(self, source: FrameSource, factor: int) -> None:
        if factor < 1:
            raise ValueError(f"factor must be >= 1, got {factor}")
        super().__init__(source)
        self.factor = factor

    @property
    def size(self) -> tuple[int, int]:
        width, height = getattr(self.inner, "size", (0, 0)) or (0, 0)
        return int(width) // self.factor, int(height) // self.factor

    def read(self) -> Frame | None:
        frame = self.inner.read()
        if frame is None or self.factor == 1:
            return frame
        height, width = frame.image.shape[:2]
        if min(height, width) < self.factor:
            return frame
        image = cv2.resize(frame.image, (width // self.factor, height // self.factor),
                           interpolation=cv2.INTER_AREA)
        return dataclasses.replace(frame, image=np.asarray(image, dtype=np.uint8))


class CheckedSource(WrappedSource):
    """Wraps a source that is not one of edge-sdk's own (a plugin's, or an object given to the
    pipeline) so that `read` returning something else than a Frame or None, or a Frame whose
    image is not H x W x 3 uint8, is a SourceContractError, which ends the run with one line
    (a live source too: reopening it would not help), instead of an AttributeError deep in the
    capture thread or an inference failure blamed on the model.

    Other attributes (`fps`, `live`, `reduce`, ...) are the wrapped source's, and setting one
    sets it there.
    """

    def read(self) -> Frame | None:
        frame = self.inner.read()
        if frame is None:
            return frame
        if not isinstance(frame, Frame):
            raise SourceContractError(
                f"{hide_password(str(self.uri))}: {self._author()}.read() returned a "
                f"{type(frame).__name__}; read() must return an edge_sdk.Frame or None (at the end)"
            )
        image = frame.image
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
                and image.dtype == np.uint8):
            # Otherwise the Classifier refuses it, which the pipeline reports as an inference
            # failure and blames the model.
            what = (f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray)
                    else type(image).__name__)
            raise SourceContractError(
                f"{hide_password(str(self.uri))}: {self._author()}.read() returned a Frame "
                f"whose image is {what}; it must be an H x W x 3 uint8 BGR array"
            )
        return frame

    def _author(self) -> str:
        """The class whose read() broke the contract: the plugin's, not the one wrapping it."""
        inner = self.inner
        return type(inner.source if isinstance(inner, ManagedSource) else inner).__name__

    def __setattr__(self, name: str, value: Any) -> None:
        # `Pipeline._apply_reduce` sets `reduce` on the source: it must reach the real one.
        if name in ("inner", "uri"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.inner, name, value)


def check_source(source: FrameSource) -> FrameSource:
    """Return `source`, wrapped in a `CheckedSource` unless it is one of the built-in sources."""
    return source if isinstance(source, BaseSource) else CheckedSource(source)


class Pipeline:
    """Runs a source through a classifier into sinks, in threads; see the module docstring.

    Args:
        source: A URI (anything `edge_sdk.sources.open_source` accepts: ``0``, a file, a
            folder, ``http://...``, ``test://``, ...) or an open FrameSource. The pipeline
            closes it when it stops.
        source_options: Options for opening a URI source, as `open_source` takes them
            (``{"size": "1280x720", "fps": 30}`` for a camera, ``{"transport": "udp"}`` for
            RTSP; docs/sources.md). They apply to every reconnect too. ``reduce`` is not one of
            them: give it to the Pipeline (below).
        classifier: The Classifier; used only by the inference thread, not closed here.
        sinks: Where predictions go; each gets its own worker thread and queue. The pipeline
            closes them when it stops.
        max_fps: Publish at most this many predictions per second (frames in between are
            dropped in the slot as usual).
        max_frames: Stop after this many predictions.
        keep_all: Process every frame of the source and make every queue wait instead of
            dropping (offline runs and benchmarks: ``--every-frame``). Ignored for live
            sources.
        realtime: Pace a file source at its own frame rate, as if it were a camera.
            With neither given, a file with a frame rate plays in real time and other
            non-live sources (images) are processed whole; ``realtime=False`` alone reads a
            file as fast as it decodes, newest-wins.
        smoothing: Temporal smoothing: a frame count N (mean of the last N probability
            vectors), a `Smoother`, or None.
        on_prediction: Called as ``fn(prediction)`` for each prediction, in order, from its
            own worker thread.
        reduce: Hand frames to inference at 1/`reduce` size (1, 2, 4 or 8): JPEG sources
            decode at that size, others are shrunk in the capture thread (`DownscaledSource`).
            None picks the largest factor that keeps enough pixels for the model
            (`choose_reduce`), and no smaller than the sinks that want frames need.
        reconnect: How a live source that fails or stalls is reopened: an
            `edge_sdk.capture.Backoff`, False for never (the run ends), or None/True for the
            default backoff (live URI sources only; files end where they end).
        stall: Seconds one read of a live source may block before the source counts as
            stalled and is closed and reopened (or, without reconnect, the run ends with a
            SourceError): for drivers with no timeout of their own, such as picamera2 or a
            GStreamer appsink. None turns the watch off. See `edge_sdk.capture`.
        drain_timeout: Seconds each sink gets at shutdown to publish what it has queued.
        iterate: Whether predictions are kept for ``for prediction in pipeline``, settled
            when the pipeline starts, since predictions published before that cannot be
            recovered later:

            - None (default): kept from the start when ``with`` or the loop itself starts the
              pipeline; not when `run` or `start` does (the CLI, the service, callbacks), and
              a loop after `start` sees predictions from its first step on. Until the loop
              begins, inference never waits for it: with keep_all up to `PENDING_CAPACITY`
              (1024) predictions are kept for it, and beyond that the oldest are dropped
              (counted as sink "iterator", with one warning). Calling `wait` or `run` before
              the loop says there will be none: what was kept is let go.
            - True: kept from the start however the pipeline is started; with keep_all,
              inference waits for the loop from the first prediction on, so nothing is dropped
              however late it begins (it must begin, or the run stalls).
            - False: nothing is kept, and iterating raises RuntimeError.

            Once the loop runs, at most `ITERATOR_CAPACITY` (8) predictions wait for it:
            with keep_all inference waits for the loop, otherwise the oldest are dropped.

    Raises:
        TypeError: an argument of the wrong type (``max_frames="3"``, a classifier that is not
            a `Classifier`, an `on_prediction` that is not callable, ...).
        ValueError: a bad argument (negative limits, NaN, unknown reduce factor, ...), or a
            sink that is already closed (each pipeline needs sinks of its own).
    """

    def __init__(
        self,
        source: str | FrameSource,
        classifier: Classifier,
        sinks: Iterable[Any] = (),
        *,
        source_options: Mapping[str, Any] | None = None,
        max_fps: float | None = None,
        max_frames: int | None = None,
        keep_all: bool | None = None,
        realtime: bool | None = None,
        smoothing: int | Smoother | None = None,
        on_prediction: Callable[[Prediction], Any] | None = None,
        reduce: int | None = None,
        reconnect: Backoff | bool | None = None,
        stall: float | None = STALL_S,
        drain_timeout: float = 2.0,
        iterate: bool | None = None,
    ) -> None:
        if max_fps is not None:
            # Below one per 1000 s the wait between predictions overflows the clocks it is
            # timed with (1e-300 is a wait of 1e300 s).
            max_fps = check_number("max_fps", max_fps, low=0.001, high=1000)
        if max_frames is not None:
            check_int("max_frames", max_frames, low=1)
        if stall is not None:
            stall = check_number("stall", stall, low=0, low_open=True)
        drain_timeout = check_number("drain_timeout", drain_timeout, low=0)
        if reduce is not None and check_int("reduce", reduce) not in REDUCE_FACTORS:
            raise ValueError(f"reduce must be one of 1, 2, 4, 8, got {reduce}")
        for name, flag in (("iterate", iterate), ("keep_all", keep_all), ("realtime", realtime)):
            if flag is not None and not isinstance(flag, bool):
                raise TypeError(f"{name} must be True, False or None, got {flag!r}")
        if not isinstance(source, str) and not (hasattr(source, "read") and hasattr(source, "close")):
            raise TypeError(f"source must be a URI or a FrameSource (with read() and close()), got "
                            f"{type(source).__name__}")
        if source_options is not None and not isinstance(source_options, Mapping):
            raise TypeError(f"source_options must be a dict of option names to values, got "
                            f"{type(source_options).__name__}")
        options = dict(source_options or {})
        if options and not isinstance(source, str):
            raise ValueError("source_options apply to a source given as a URI; pass them to the "
                             "source you opened instead")
        for key in options:
            if not isinstance(key, str):
                raise TypeError(f"source_options keys are option names (str), got {key!r}")
            if key == "reduce":
                raise ValueError("give reduce to the Pipeline itself (Pipeline(..., reduce=N)), "
                                 "not in source_options")
        if not isinstance(classifier, Classifier):
            raise TypeError(f"classifier must be an edge_sdk.Classifier, got {type(classifier).__name__} "
                            "(make one with Classifier.from_model(...))")
        if classifier.closed:
            raise ValueError("the classifier is closed; make a new one with Classifier.from_model(...)")
        if on_prediction is not None and not callable(on_prediction):
            raise TypeError(f"on_prediction must be a function taking a Prediction, got "
                            f"{type(on_prediction).__name__}")
        if sinks is None or isinstance(sinks, (str, bytes)) or not isinstance(sinks, Iterable):
            raise TypeError(f"sinks must be a list of sinks, got {type(sinks).__name__}")
        self.source: str | FrameSource = source
        self.source_options: dict[str, Any] = options
        self.classifier = classifier
        self.sinks: list[Any] = list(sinks)
        if on_prediction is not None:
            self.sinks.append(CallbackSink(on_prediction))
        for sink in self.sinks:
            for method in ("publish", "close"):
                if not callable(getattr(sink, method, None)):
                    raise TypeError(f"{type(sink).__name__} is not a sink: it has no {method}()")
            if getattr(sink, "closed", False) is True:
                raise ValueError(f"sink {sink_name(sink)} is closed (a Pipeline closes its sinks when "
                                 "it stops); make a new sink for this pipeline")
        self.max_fps = max_fps
        self.max_frames = max_frames
        self.keep_all = keep_all
        self.realtime = realtime
        self.smoother = make_smoother(smoothing)
        self.reduce = reduce
        self.reconnect = reconnect
        self.stall = stall
        self.drain_timeout = drain_timeout
        self.iterate = iterate
        self.metrics = Metrics()
        #: The capture thread object, once started.
        self.capture: Capture | None = None
        #: The error that ended the run early (source failed for good, classifier broken).
        self.error: BaseException | None = None
        self._workers: list[SinkWorker] = []
        self._iter_queue: BoundedQueue[Prediction] | None = None
        self._iter_begun = False  # a loop has asked for its first prediction
        self._iter_warned = False
        self._opened: FrameSource | None = None
        self._reduce_factor = 1
        self._stop_requested = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._state = "new"  # new -> running -> stopped
        self._thread: threading.Thread | None = None
        self._published = 0
        self._iterated = False  # a for-loop has begun: one per run

    # -- what sinks may read ------------------------------------------------------------------

    @property
    def fps(self) -> float:
        """The source's frame rate (0.0 if unknown or not opened yet)."""
        holder = self.capture if self.capture is not None else self._opened
        return float(getattr(holder, "fps", 0.0) or 0.0)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames handed out ((0, 0) if unknown or not opened yet)."""
        holder = self.capture if self.capture is not None else self._opened
        size = getattr(holder, "size", (0, 0)) or (0, 0)
        return int(size[0]), int(size[1])

    @property
    def source_waiting(self) -> float | None:
        """While the source waits for input by design, when it looks next; else None (see
        `Capture.source_waiting`): an idle watched folder is not a stalled camera."""
        return self.capture.source_waiting if self.capture is not None else None

    @property
    def running(self) -> bool:
        return self._state == "running" and not self._done.is_set()

    @property
    def stop_requested(self) -> bool:
        """True once `request_stop` (or `stop`) was called."""
        return self._stop_requested.is_set()

    @property
    def published(self) -> int:
        """Predictions published so far."""
        return self._published

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> Pipeline:
        """Open the source, start the sink workers, the capture and the inference threads.

        Predictions are kept for a later ``for`` loop only with ``iterate=True`` (see the
        class docstring); ``with`` keeps them by default.

        Raises:
            SourceError, SinkError, ...: the source or a sink cannot be set up; everything
                already started is stopped again first.
            RuntimeError: the pipeline was already started.
        """
        return self._start(for_iteration=False)

    def _start(self, *, for_iteration: bool) -> Pipeline:
        """`start`; `for_iteration`: started by ``with`` or a loop, which may iterate."""
        with self._lock:
            if self._state != "new":
                raise RuntimeError(_RUNS_ONCE)
            self._state = "running"
        self.metrics.reset_clock()
        try:
            self._open_source()
            self._start_sinks()
            if self.iterate or (self.iterate is None and for_iteration):
                self._make_iter_queue(begun=bool(self.iterate))
            self._start_capture()
        except BaseException:
            self._shutdown()
            raise
        self._thread = threading.Thread(target=self._infer_loop, name="inference", daemon=True)
        self._thread.start()
        return self

    def _open_source(self) -> None:
        """Open the source and settle the modes that depend on what it is."""
        from edge_sdk.sources import open_source
        from edge_sdk.sources.opening import stoppable_opens

        uri = self.source if isinstance(self.source, str) else None
        # request_stop() (a signal handler, another thread) ends a connect to a camera that
        # never answers instead of waiting out its timeout.
        with stoppable_opens(self._stop_requested):
            opened = open_source(uri, **self.source_options) if uri is not None else self.source
        source = check_source(opened)  # type: ignore[arg-type]
        self._opened = source
        live = bool(getattr(source, "live", False))
        if live:
            if self.keep_all:
                log.info("keep_all does not apply to a live source: it would make %s back up",
                         self._uri())
            self.keep_all, self.realtime = False, False
        elif self.keep_all is None and self.realtime is None:
            # A file with a frame rate plays like a camera; images (no rate) are each classified.
            fps = float(getattr(source, "fps", 0.0) or 0.0)
            self.realtime, self.keep_all = fps > 0, not fps > 0
        self.keep_all, self.realtime = bool(self.keep_all), bool(self.realtime)
        if not self.keep_all and getattr(source, "watch", False) is True:
            log.warning("watching %s newest first: a burst of images is thinned to keep up; to "
                        "classify every image, keep all (--every-frame, [pipeline] keep_all = "
                        "true, Pipeline(keep_all=True))", self._uri())
        self._reduce_factor = self._reduce_for(source, self._frame_width_needed())
        self._opened = self._apply_reduce(source, self._reduce_factor)

    def _start_sinks(self) -> None:
        names: set[str] = set()
        for sink in self.sinks:
            name = base = sink_name(sink)
            n = 2
            while name in names:
                name, n = f"{base}{n}", n + 1
            names.add(name)
            worker = SinkWorker(sink, self.metrics, name=name, block=bool(self.keep_all),
                                on_fatal=self._sink_died)
            self._workers.append(worker)
            attach = getattr(sink, "attach", None)
            if callable(attach):
                attach(self)
            worker.start()

    def _make_iter_queue(self, *, begun: bool) -> BoundedQueue[Prediction]:
        """The queue a ``for`` loop takes predictions from.

        Until the loop begins it never makes inference wait (see `iterate`); `_begin_iteration`
        then shrinks it to `ITERATOR_CAPACITY` and, with keep_all, makes it blocking.
        """
        pending = PENDING_CAPACITY if self.keep_all and not begun else ITERATOR_CAPACITY
        queue: BoundedQueue[Prediction] = BoundedQueue(
            pending, lossless=False, block=bool(self.keep_all) and begun
        )
        self._iter_begun = begun
        self._iter_queue = queue
        self.metrics.register_sink("iterator", lossless=False, queue_depth=queue.__len__)
        return queue

    def _begin_iteration(self, queue: BoundedQueue[Prediction]) -> None:
        # The queue's producer reads capacity and block under the queue's lock, on every put
        # and every 0.1 s while it waits, so switching them here takes effect at once.
        queue.capacity = ITERATOR_CAPACITY
        queue.block = bool(self.keep_all)
        self._iter_begun = True

    def _no_iteration(self) -> None:
        """`wait` or `run` before any loop (iterate=None): no loop will come, let the queue go."""
        queue = self._iter_queue
        if queue is not None and self.iterate is None and not self._iter_begun:
            self._iter_queue = None
            queue.close()

    def _start_capture(self) -> None:
        from edge_sdk.sources import open_source

        first = self._opened
        assert first is not None
        uri = self.source if isinstance(self.source, str) else None
        live = bool(getattr(first, "live", False))
        reconnect = self.reconnect
        if reconnect is None or reconnect is True:
            reconnect = Backoff() if live and uri is not None else None
        elif reconnect is False:
            reconnect = None
        if reconnect is not None and uri is None:
            raise ValueError("reconnect needs the source as a URI, so it can be reopened")
        opened = [first]
        factor = self._reduce_factor

        def reopen() -> FrameSource:
            # The first call hands over the source opened in start() (so open errors surface
            # there, before any thread runs); later calls are reconnects.
            if opened:
                return opened.pop()
            assert uri is not None
            return self._apply_reduce(check_source(open_source(uri, **self.source_options)), factor)

        capture = Capture(
            reopen if reconnect is not None else first,
            keep_all=bool(self.keep_all),
            realtime=bool(self.realtime),
            reconnect=reconnect,
            stall=self.stall if live else None,
        )
        capture.start()
        self.capture = capture
        self._opened = None  # the capture owns (and closes) it now
        self.metrics.bind_source(self._capture_counters)

    def _frame_width_needed(self) -> int | None:
        """The widest frame any sink needs: 0 if none wants frames, None for full size."""
        widths = [0]
        for sink in self.sinks:
            if bool(getattr(sink, "wants_frames", True)):
                width = int(getattr(sink, "frame_width", 0) or 0)
                if width <= 0:
                    return None
                widths.append(width)
        return max(widths)

    def _reduce_for(self, source: Any, min_width: int | None) -> int:
        if self.reduce is not None:
            return self.reduce
        if min_width is None:
            return 1
        card = self.classifier.card
        full = getattr(source, "full_size", None)
        if full is None:
            # size is what the source hands out now, at its current reduction.
            size = getattr(source, "size", (0, 0)) or (0, 0)
            current = int(getattr(source, "reduce", 1) or 1)
            full = (int(size[0]) * current, int(size[1]) * current)
        return choose_reduce(
            tuple(full), tuple(card.input_size), card.resize_shorter, min_width  # type: ignore[arg-type]
        )

    def _apply_reduce(self, source: FrameSource, factor: int) -> FrameSource:
        """Make `source` hand out frames 1/`factor` the size: decoded smaller when it is a JPEG
        source, else shrunk in the capture thread (off the inference thread's path)."""
        if factor == 1:
            return source
        uri = self._uri()
        if hasattr(source, "reduce"):
            source.reduce = factor
            if getattr(source, "reduce", 1) == factor:
                log.info("decoding %s at 1/%d size (no sink needs full-size frames)", uri, factor)
                return source
        log.info("shrinking frames of %s to 1/%d in the capture thread (no sink needs "
                 "full-size frames)", uri, factor)
        return DownscaledSource(source, factor)

    def _capture_counters(self) -> tuple[int, int, int]:
        cap = self.capture
        if cap is None:
            return 0, 0, 0
        return cap.frames_in, cap.frames_dropped, cap.reconnects

    def _sink_died(self, exc: BaseException) -> None:
        """A sink raised SystemExit or KeyboardInterrupt (in its worker): stop the run, and
        have the thread running it raise that (`run`, the ``for`` loop)."""
        with self._lock:
            if self.error is None:
                self.error = exc
        self.request_stop()

    @property
    def sink_failures(self) -> dict[str, SinkFailure]:
        """The sinks that failed during the run (a publish or their close raised), by name.

        Empty when every sink did its job. A run goes on when a sink fails (the other sinks are
        not held up), so this is where a caller learns about it afterwards, e.g. to exit
        non-zero: each `SinkFailure` has the count and the last error's one-line message. The
        counts of failed publishes are also the metrics' per-sink ``errors``.
        """
        return {
            w.name: SinkFailure(w.failures, w.last_error) for w in self._workers if w.failures
        }

    def failure_summary(self) -> str | None:
        """One line on the sinks that failed (see `sink_failures`), or None if none did."""
        failures = self.sink_failures
        if not failures:
            return None
        return "; ".join(
            f"sink {name} failed {many(f.failures, 'time')} "
            f"(last: {f.last_error})" for name, f in failures.items()
        )

    def request_stop(self) -> None:
        """Ask the pipeline to stop; returns at once. Safe from any thread and signal handlers."""
        self._stop_requested.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the inference thread has finished (source ended, max_frames or stop).

        Called before any ``for`` loop, it also lets go of the predictions kept for one
        (``iterate=None``): waiting means not iterating.

        Returns:
            True if it finished, False on timeout.

        Raises:
            RuntimeError: the pipeline was never started (nothing would ever finish).
        """
        if self._state == "new":
            raise RuntimeError("this Pipeline has not started; call start() first (or use run(), "
                               "a with block or a for loop)")
        self._no_iteration()
        return self._done.wait(timeout)

    def stop(self) -> None:
        """Stop and shut down in reverse order: source, inference, sinks (drained, then closed).

        Idempotent. Called from one of the pipeline's own threads (e.g. a sink reacting to a
        key press) it only requests the stop; whoever runs the pipeline finishes it.
        """
        self.request_stop()
        current = threading.current_thread()
        if current is self._thread or any(w._thread is current for w in self._workers):
            return
        self._shutdown()

    def _shutdown(self) -> None:
        with self._lock:
            if self._state == "stopped":
                return
            self._state = "stopped"
        self._stop_requested.set()
        for worker in self._workers:  # unblock an inference thread waiting for queue room
            worker.release()
        iter_queue = self._iter_queue
        if iter_queue is not None:
            iter_queue.release()
        if self.capture is not None:
            try:
                self.capture.stop()
            except Exception:
                log.exception("stopping the capture thread failed")
        elif self._opened is not None:  # start() failed between opening and capturing
            self._opened.close()
            self._opened = None
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            if self._thread.is_alive():
                log.warning("the inference thread did not stop within 5 s")
        self.metrics.sample_source()
        deadline = time.monotonic() + self.drain_timeout
        for worker in self._workers:
            worker.close(max(0.1, deadline - time.monotonic()))
        started = {id(w.sink) for w in self._workers}
        for sink in self.sinks:  # start() failed before their worker existed: still ours
            if id(sink) not in started:
                try:
                    sink.close()
                except Exception:
                    log.exception("closing sink %s failed", sink_name(sink))
        if iter_queue is not None:
            iter_queue.close()
        self._done.set()

    def run(self) -> dict[str, Any]:
        """Start (if needed), block until the run ends or `request_stop`, then shut down.

        Returns:
            The final `Metrics.snapshot`.

        Raises:
            EdgeSDKError: what ended the run early (e.g. a source that failed for good).
            SystemExit, KeyboardInterrupt: raised by a sink or the `on_prediction` callback
                (in its own thread); the pipeline was stopped and its sinks closed.
            RuntimeError: the pipeline has already run (a Pipeline runs once).
        """
        if self._state == "stopped":
            raise RuntimeError(_RUNS_ONCE)
        if self._state == "new":
            self.start()
        self._no_iteration()
        try:
            # Short waits keep the calling (main) thread responsive to signal handlers.
            while not self._done.wait(0.2) and not self._stop_requested.is_set():
                pass
        finally:
            self.stop()
        if self.error is not None:
            raise self.error
        return self.metrics.snapshot()

    def __enter__(self) -> Pipeline:
        """Start, keeping predictions for a ``for`` loop in the block (see `iterate`).

        Raises:
            RuntimeError: the pipeline has already run (a Pipeline runs once).
        """
        if self._state == "stopped":
            raise RuntimeError(_RUNS_ONCE)
        if self._state == "new":
            self._start(for_iteration=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __iter__(self) -> Iterator[Prediction]:
        """Yield predictions as they are published, until the run ends.

        Starts the pipeline if needed and stops it when the loop ends or is left early.
        Which predictions it sees depends on how the pipeline was started (`iterate`): all of
        them when ``with`` or the loop started it, from the first step on after `start`.
        At most `ITERATOR_CAPACITY` predictions wait for a slow loop; older ones are dropped
        (counted as sink "iterator") unless ``keep_all`` is set, which makes inference wait.
        One loop per pipeline: a second one, at the same time or after it, is refused, since
        the two would split the predictions or the second would get none.

        Raises:
            RuntimeError: the pipeline was made with ``iterate=False``, has already run, or is
                iterated by another loop.
            EdgeSDKError: what ended the run early, after the last prediction.
            SystemExit, KeyboardInterrupt: as `run`.
        """
        if self.iterate is False:
            raise RuntimeError("this Pipeline was made with iterate=False: it keeps no "
                               "predictions to iterate over")
        with self._lock:
            if self._state == "stopped":
                raise RuntimeError(_RUNS_ONCE)
            if self._iterated:
                raise RuntimeError("this Pipeline is already iterated by another for-loop; one loop "
                                   "per pipeline (it runs once; make a new one to run again)")
            self._iterated = True
        if self._state == "new":
            self._start(for_iteration=True)
        queue = self._iter_queue
        if queue is None:  # started by start(), or let go by wait(): from now on
            queue = self._make_iter_queue(begun=True)
            if self._done.is_set():
                queue.close()
        self._begin_iteration(queue)
        try:
            while True:
                try:
                    item = queue.get(timeout=0.2)
                except QueueClosed:
                    break
                if item is None:
                    if self._done.is_set() or self._stop_requested.is_set():
                        self.stop()  # closes the queue; what is left is still yielded
                    continue
                yield item
        finally:
            self.stop()
        if self.error is not None:
            raise self.error

    # -- the inference thread -----------------------------------------------------------------

    def _infer_loop(self) -> None:
        try:
            self._infer()
        except EdgeSDKError as exc:
            log.error("%s", exc)
            self.error = exc
        except BaseException as exc:  # never die silently: the run() caller re-raises it
            log.exception("the inference thread failed")
            self.error = exc
        finally:
            iter_queue = self._iter_queue  # read once: wait() may let it go meanwhile
            if iter_queue is not None:
                iter_queue.close()
            self._done.set()

    def _infer(self) -> None:
        capture, metrics = self.capture, self.metrics
        assert capture is not None
        period_ns = int(1e9 / self.max_fps) if self.max_fps else 0
        next_due = 0
        failures = 0
        source_done = False
        stop = self._stop_requested
        while not stop.is_set():
            if period_ns:
                delay = (next_due - time.monotonic_ns()) / 1e9
                if delay > 0 and stop.wait(delay):
                    break
            waited_from = time.perf_counter_ns()
            frame: Frame | None = None
            decode_ms = 0.0  # JPEG frames are decoded in capture.get: not waiting, reported apart
            while frame is None and not stop.is_set():
                frame = capture.get(timeout=0.1)
                decode_ms += capture.last_decode_ms
                if frame is None and capture.finished:
                    break
            if frame is None:
                source_done = capture.finished
                break
            capture_wait = max(0.0, (time.perf_counter_ns() - waited_from) / 1e6 - decode_ms)
            next_due = time.monotonic_ns() + period_ns
            metrics.sample_source()
            try:
                prediction = classify(self.classifier, frame, self.smoother)
            except Exception as exc:
                metrics.record_error()
                failures += 1
                log.warning("frame %d could not be classified: %s: %s", frame.index,
                            type(exc).__name__, exc)
                if failures >= MAX_CONSECUTIVE_ERRORS:
                    raise BackendError(
                        f"inference failed on {failures} frames in a row (last: "
                        f"{type(exc).__name__}: {exc}); check the model and runtime with "
                        "'edge-classify models info'"
                    ) from exc
                continue
            failures = 0
            age_ns = time.monotonic_ns() - frame.timestamp_ns
            prediction = dataclasses.replace(
                prediction.with_timings(capture_wait=capture_wait, age=age_ns / 1e6),
                wall_time_ms=(time.time_ns() - age_ns) // 1_000_000,
            )
            metrics.record_prediction(prediction.timings, decode=decode_ms if decode_ms > 0 else None)
            for worker in self._workers:
                worker.put(prediction, frame)
            queue = self._iter_queue  # once: wait() may let it go meanwhile
            if queue is not None:
                accepted, lost = queue.put(prediction)
                if lost and accepted:  # a closed queue refuses without losing anything
                    metrics.sink_dropped("iterator", lost)
                    self._warn_unread(lost)
            self._published += 1
            if self.max_frames is not None and self._published >= self.max_frames:
                break
        error = capture.error
        if capture.ended and error is not None and not stop.is_set():
            # The source failed for good (no reconnect, or the backoff gave up).
            if not isinstance(error, EdgeSDKError):
                error = SourceError(
                    f"{self._uri()} failed: {type(error).__name__}: {error}; check the camera "
                    "or stream (live sources reconnect unless reconnect=False)"
                )
            self.error = error
        elif source_done and not capture.ended and not stop.is_set():
            # The capture thread ended without the source ending or a stop: an exception no
            # source should raise killed it (threading printed its traceback). Not a normal end.
            self.error = SourceError(
                f"reading {self._uri()} failed unexpectedly in the capture thread (traceback "
                "above); the run ended early. Check the source, or report the traceback"
            )

    def _warn_unread(self, lost: int) -> None:
        if self.keep_all and not self._iter_begun and not self._iter_warned:
            self._iter_warned = True
            log.warning(
                "%d predictions wait for a for-loop over the pipeline that has not begun; the "
                "oldest are dropped from now on (Pipeline(..., iterate=True) makes inference "
                "wait for a late loop, iterate=False keeps nothing)", PENDING_CAPACITY)

    def _uri(self) -> str:
        """The source's URI for messages, password starred out (they reach logs and screens)."""
        uri = self.source if isinstance(self.source, str) else getattr(self.source, "uri", "?")
        return hide_password(str(uri))
