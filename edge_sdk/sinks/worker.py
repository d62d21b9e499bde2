"""One thread and one bounded queue per sink, so a slow or failing sink never holds up the rest.

Two queue policies, chosen by the sink's ``lossless`` attribute (default False):

- **newest-wins** (visual sinks: overlay, video, web): a short queue; when it is full the
  *oldest* waiting item is discarded to make room, and the discard is counted. A slow display
  shows fewer, but always recent, frames.
- **lossless FIFO** (``lossless = True``: MQTT, JSON lines): a long queue kept in order. If it
  still overflows, the *incoming* prediction is refused, counted and logged (a warning at most
  every few seconds), so what was accepted is never lost and never reordered.

With ``block=True`` (the pipeline's offline mode, ``keep_all``) a full queue of either kind
makes the producer wait instead: every prediction reaches every sink.

A `publish` that raises is counted and logged, and the worker goes on with the next item. A
foreseeable failure (an `OSError` such as a full disk, or an `EdgeSDKError`, whose message names
the fix) is one line, repeated at most every `WARN_INTERVAL_S` (the traceback only at DEBUG); any
other exception gets its traceback the first time. A publish that raises `SystemExit` or
`KeyboardInterrupt` (``sys.exit()`` in a callback) ends the worker: what it still holds is
counted as dropped, the sink is closed, and the worker's `on_fatal` tells the pipeline to stop
and raise it. `SinkWorker.close` stops accepting, drains what is queued (up to a deadline) and
then calls the sink's own ``close()`` in the worker thread, so a GUI sink's window is opened,
drawn and destroyed by one thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from edge_sdk.errors import EdgeSDKError
from edge_sdk.metrics import Metrics
from edge_sdk.types import Frame, Prediction

log = logging.getLogger(__name__)

#: Default queue lengths: enough to absorb a hiccup, small enough to stay fresh.
NEWEST_WINS_CAPACITY = 2
LOSSLESS_CAPACITY = 1024

#: Seconds between repeated warnings about the same sink.
WARN_INTERVAL_S = 10.0

T = TypeVar("T")


class QueueClosed(Exception):
    """Raised by `BoundedQueue.get` once the queue is closed and empty."""


class BoundedQueue(Generic[T]):
    """A thread-safe bounded queue with a newest-wins, lossless or blocking overflow policy.

    Args:
        capacity: Most items held.
        lossless: On overflow refuse the incoming item (True) or discard the oldest (False).
        block: On overflow wait for room instead (until `release` or `close`).

    Raises:
        ValueError: `capacity` < 1.
    """

    def __init__(self, capacity: int, *, lossless: bool, block: bool = False) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.lossless = lossless
        self.block = block
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._released = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T) -> tuple[bool, int]:
        """Add `item` following the overflow policy.

        Returns:
            (accepted, discarded): whether `item` was queued, and how many items were lost to
            make room or by refusing it (0 or 1).
        """
        with self._cond:
            if self._closed:
                return False, 1
            if self.block:
                while len(self._items) >= self.capacity and not self._released:
                    self._cond.wait(0.1)
                if self._closed:  # while it waited: nobody would take the item
                    return False, 1
            if len(self._items) >= self.capacity:
                if self.lossless:
                    return False, 1
                self._items.popleft()
                self._items.append(item)
                self._cond.notify_all()
                return True, 1
            self._items.append(item)
            self._cond.notify_all()
            return True, 0

    def get(self, timeout: float | None = None) -> T | None:
        """Return the oldest item; None if `timeout` passed first.

        Raises:
            QueueClosed: the queue is closed and has nothing left.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._closed:
                    raise QueueClosed
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            item = self._items.popleft()
            self._cond.notify_all()  # room for a blocked producer
            return item

    def release(self) -> None:
        """Stop producers from waiting for room (they fall back to the non-blocking policy)."""
        with self._cond:
            self._released = True
            self._cond.notify_all()

    def close(self) -> None:
        """Refuse new items; `get` drains what is left, then raises `QueueClosed`."""
        with self._cond:
            self._closed = True
            self._released = True
            self._cond.notify_all()

    def clear(self) -> int:
        """Discard every item held; return how many there were."""
        with self._cond:
            n = len(self._items)
            self._items.clear()
            self._cond.notify_all()
            return n


@dataclass(frozen=True)
class SinkFailure:
    """How a sink failed during a run: see `SinkWorker.failures` and `Pipeline.sink_failures`.

    Attributes:
        failures: Calls of the sink that raised: publishes (as counted in the metrics' sink
            ``errors``) plus its ``close()``.
        last_error: One line on the last of them, naming the fix when the sink's error does.
    """

    failures: int
    last_error: str


def describe_error(exc: BaseException) -> str:
    """One line for an exception: an EdgeSDKError's own message (it names the fix), else its type
    and message."""
    if isinstance(exc, EdgeSDKError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def is_foreseeable(exc: BaseException) -> bool:
    """A failure the world causes (full disk, missing folder, network, a sink's own SinkError),
    reported in one line; anything else is a bug somewhere and is shown with its traceback."""
    return isinstance(exc, (OSError, EdgeSDKError))


def sink_name(sink: Any) -> str:
    """Return a short name for a sink: its ``name`` attribute, else its class name without "Sink"."""
    name = getattr(sink, "name", None)
    if isinstance(name, str) and name:
        return name
    cls = type(sink).__name__
    return (cls[:-4] if cls.endswith("Sink") and len(cls) > 4 else cls).lower()


class SinkWorker:
    """Feeds one sink from its own daemon thread through a `BoundedQueue`.

    Args:
        sink: Any object with ``publish(prediction, frame)`` and ``close()``; its optional
            ``lossless`` and ``wants_frames`` attributes choose the queue policy and whether it
            gets frames (``wants_frames = False``: ``frame`` is always None).
        metrics: Where published/dropped/error counts and publish times go.
        name: Name in logs and metrics (default: `sink_name`).
        capacity: Queue length (default: 2 newest-wins, 1024 lossless).
        block: Make `put` wait for room instead of dropping (offline runs).
        on_fatal: Called as ``on_fatal(exc)``, from the worker thread, when the sink raised
            `SystemExit` or `KeyboardInterrupt` (or another BaseException) and the worker
            ended: the pipeline stops and raises it in the thread that runs it.

    Attributes:
        failures: Calls of the sink that raised an Exception (publishes and close).
        last_error: One line on the last of them ("" if none).
        fatal: The BaseException that ended the worker, if one did.

    Raises:
        ValueError: `capacity` < 1.
    """

    def __init__(
        self,
        sink: Any,
        metrics: Metrics,
        *,
        name: str | None = None,
        capacity: int | None = None,
        block: bool = False,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.sink = sink
        self.name = name or sink_name(sink)
        self.lossless = bool(getattr(sink, "lossless", False))
        self.wants_frames = bool(getattr(sink, "wants_frames", True))
        default = LOSSLESS_CAPACITY if self.lossless else NEWEST_WINS_CAPACITY
        self._queue: BoundedQueue[tuple[Prediction, Frame | None]] = BoundedQueue(
            default if capacity is None else capacity, lossless=self.lossless, block=block
        )
        self._metrics = metrics
        self._busy = False
        self._started = False
        self._thread = threading.Thread(target=self._loop, name=f"sink-{self.name}", daemon=True)
        self._last_warning = {"overflow": 0.0, "error": 0.0, "close": 0.0}
        self._suppressed = {"overflow": 0, "error": 0, "close": 0}
        self._traceback_shown = False
        self._on_fatal = on_fatal
        self.failures = 0
        self.last_error = ""
        self.fatal: BaseException | None = None
        metrics.register_sink(self.name, lossless=self.lossless, queue_depth=self.depth)

    # -- producer side ------------------------------------------------------------------------

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def depth(self) -> int:
        """Return how many items wait in the queue (not counting one being published)."""
        return len(self._queue)

    def put(self, prediction: Prediction, frame: Frame | None) -> bool:
        """Queue one prediction; return False if it was refused (lossless overflow or closed).

        Never blocks unless the worker was made with ``block=True``.
        """
        accepted, discarded = self._queue.put((prediction, frame if self.wants_frames else None))
        if discarded:
            self._metrics.sink_dropped(self.name, discarded)
        if not accepted and self.lossless and not self._queue.closed:
            self._warn("overflow", "queue full (%d waiting): prediction %d refused",
                       self._queue.capacity, prediction.frame_index)
        return accepted

    def release(self) -> None:
        """Stop waiting for room in `put` (the pipeline calls it when stopping)."""
        self._queue.release()

    def close(self, timeout: float = 2.0) -> bool:
        """Stop accepting, publish what is queued, close the sink; wait at most `timeout` s.

        Returns:
            True if the worker finished in time. If not (a sink stuck in `publish`), the
            thread is abandoned (it is a daemon) and the unpublished items are counted as
            dropped.
        """
        self._queue.close()
        if not self._started:
            self._close_sink()
            return True
        self._thread.join(timeout)
        if self._thread.is_alive():
            left = len(self._queue) + (1 if self._busy else 0)
            log.warning("sink %s did not finish within %.1f s; %d prediction(s) not published",
                        self.name, timeout, left)
            if left:
                self._metrics.sink_dropped(self.name, left)
            return False
        return True

    # -- worker side --------------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while True:
                try:
                    item = self._queue.get()
                except QueueClosed:
                    break
                if item is None:  # pragma: no cover - get() without timeout never returns None
                    continue
                self._busy = True
                self._publish(*item)
                self._busy = False
        except BaseException as exc:  # noqa: BLE001 - SystemExit & co end the run, not just this thread
            self._busy = False
            self._metrics.sink_error(self.name)
            self._die(exc, "publishing")
        self._close_sink()

    def _die(self, exc: BaseException, doing: str) -> None:
        """The sink raised a BaseException: stop the run, let go of what waits, count it."""
        self.fatal = exc
        log.error("sink %s raised %s while %s; stopping the pipeline", self.name,
                  type(exc).__name__, doing)
        if self._on_fatal is not None:
            self._on_fatal(exc)
        self._queue.close()  # a producer waiting for room (keep_all) goes on at once
        left = self._queue.clear()
        if left:
            self._metrics.sink_dropped(self.name, left)

    def _publish(self, prediction: Prediction, frame: Frame | None) -> None:
        t0 = time.perf_counter_ns()
        try:
            self.sink.publish(prediction, frame)
        except Exception as exc:  # noqa: BLE001 - counted and logged by _failed; the others go on
            self._metrics.sink_error(self.name)
            self._failed(exc, f"sink {self.name} failed on prediction {prediction.frame_index}", "error")
            return
        self._metrics.sink_published(self.name, (time.perf_counter_ns() - t0) / 1e6)

    def _close_sink(self) -> None:
        try:
            self.sink.close()
        except Exception as exc:  # noqa: BLE001 - counted and logged by _failed
            self._failed(exc, f"closing sink {self.name} failed", "close")
        except BaseException as exc:  # noqa: BLE001 - as in _loop
            if self.fatal is None:
                self._die(exc, "closing")

    def _failed(self, exc: Exception, what: str, kind: str) -> None:
        """Count and log a call of the sink that raised (see the module docstring for how)."""
        self.failures += 1
        self.last_error = describe_error(exc)
        if is_foreseeable(exc) or self._traceback_shown:
            self._warn(kind, "%s: %s", what, self.last_error, level=logging.ERROR, prefix=False)
            log.debug("%s", what, exc_info=exc)
        else:
            self._traceback_shown = True
            self._last_warning[kind] = time.monotonic()
            log.error("%s", what, exc_info=exc)

    def _warn(self, kind: str, message: str, *args: Any, level: int = logging.WARNING,
              prefix: bool = True) -> None:
        """Log about this sink, at most once per `WARN_INTERVAL_S` per kind."""
        now = time.monotonic()
        if self._last_warning[kind] and now - self._last_warning[kind] < WARN_INTERVAL_S:
            self._suppressed[kind] += 1
            return
        suppressed, self._suppressed[kind] = self._suppressed[kind], 0
        self._last_warning[kind] = now
        more = f" ({suppressed} more since the last one)" if suppressed else ""
        if prefix:
            message, args = "sink %s: " + message, (self.name, *args)
        log.log(level, message + more, *args)
