"""A sink that keeps systemd informed: READY on the first prediction, WATCHDOG while they flow.

systemd restarts a `WatchdogSec=` service whose pings stop. Pinging from a timer alone would
prove only that the process is alive; pinging only while predictions arrive proves the whole
path works (camera, capture, runtime, sinks' fan-out), so a stalled camera or a hung runtime
gets the service restarted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from edge_sdk.protocols import Closing
from edge_sdk.service.notify import SystemdNotifier
from edge_sdk.types import Frame, Prediction

log = logging.getLogger("edge_sdk.service")


def effective_stall_after(stall_after: float | None, watchdog: float | None) -> float:
    """Return the stall timeout `WatchdogSink` uses: `stall_after`, or half the watchdog's.

    The config check calls this too, so `check-config` and the service agree on what is
    accepted. Without a watchdog any value goes (nothing is pinged).

    Raises:
        ValueError: with a watchdog, a timeout not strictly between 0 and the watchdog's (a
            longer one keeps a stalled service pinging for longer than WatchdogSec, delaying
            the restart the watchdog is there for).
    """
    value = stall_after if stall_after is not None else (watchdog or 0) / 2
    if watchdog is not None and not 0 < value < watchdog:
        raise ValueError(f"stall_after must be within (0, {watchdog}), got {value}")
    return value


class WatchdogSink(Closing):
    """Turns the flow of predictions into sd_notify READY / WATCHDOG / STATUS messages.

    Args:
        notifier: Where the messages go (a disabled notifier makes this sink a no-op).
        watchdog: systemd's watchdog timeout in seconds (`watchdog_seconds()`), or None.
        stall_after: Seconds without a prediction after which pings stop; default half the
            watchdog timeout, so systemd acts within 1.5 timeouts of a stall.
        status_every: Seconds between STATUS updates (current rate, count, last label).
        clock: Monotonic clock in seconds (tests pass their own).

    Raises:
        ValueError: non-positive timeouts.
    """

    lossless = False
    wants_frames = False
    name = "systemd"

    def __init__(
        self,
        notifier: SystemdNotifier,
        *,
        watchdog: float | None,
        stall_after: float | None = None,
        status_every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if watchdog is not None and watchdog <= 0:
            raise ValueError(f"watchdog must be > 0 seconds, got {watchdog}")
        if not 0 < status_every <= 86400:  # a longer wait overflows the clock it is timed with
            raise ValueError(f"status_every must be within (0, 86400] seconds, got {status_every}")
        self.notifier = notifier
        self.watchdog = watchdog
        self.stall_after = effective_stall_after(stall_after, watchdog)
        self.status_every = status_every
        self._clock = clock
        self._lock = threading.Lock()
        self.count = 0
        self.pings = 0
        self._last: float | None = None
        self._label = ""
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._stalled = False
        self._pipeline: Any = None
        self._thread = threading.Thread(target=self._loop, name="systemd-watchdog", daemon=True)
        self._thread.start()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def attach(self, pipeline: Any) -> None:
        """Remember the pipeline, to ask whether its source is idle by design (a watched folder
        waiting for images), which counts as healthy as a prediction does."""
        self._pipeline = pipeline

    def _source_idle(self) -> bool:
        """The source waits for input and its next look is not `stall_after` overdue."""
        waiting = getattr(self._pipeline, "source_waiting", None)
        return waiting is not None and time.monotonic() - waiting <= self.stall_after

    def publish(self, prediction: Prediction, frame: Frame | None = None) -> None:
        """Record one prediction; the first one makes the service READY."""
        label = prediction.label
        with self._lock:
            self.count += 1
            self._last = self._clock()
            self._label = f"{label.name} {label.score:.0%}" if label else "-"
        if not self._ready.is_set():
            self._ready.set()
            self.notifier.ready(status=f"first prediction: {self._label}")
            log.info("service ready: first prediction %s", self._label)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def _period(self) -> float:
        return min(self.watchdog / 4, self.status_every) if self.watchdog else self.status_every

    def _loop(self) -> None:
        last_status = self._clock()
        last_count = 0
        while not self._stop.wait(self._period()):
            idle = self._source_idle()
            if idle:
                with self._lock:
                    self._last = self._clock()  # the path up to the source works; it has no input
                if not self._ready.is_set():
                    self._ready.set()
                    self.notifier.ready(status="waiting for input")
                    log.info("service ready: the source is waiting for input")
            if not self._ready.is_set():
                continue
            now = self._clock()
            with self._lock:
                last, count, label = self._last, self.count, self._label
            if self.watchdog is not None and last is not None:
                if now - last <= self.stall_after:
                    if self.notifier.watchdog():
                        self.pings += 1
                    if self._stalled:
                        log.info("predictions flow again; watchdog pings resumed")
                        self._stalled = False
                elif not self._stalled:
                    self._stalled = True
                    log.error(
                        "no prediction for %.1f s: watchdog pings stopped, systemd will restart "
                        "the service (check the camera: edge-classify doctor)", now - last,
                    )
                    self.notifier.status(f"stalled: no prediction for {now - last:.0f} s")
            if now - last_status >= self.status_every:
                rate = (count - last_count) / (now - last_status)
                last_status, last_count = now, count
                if not self._stalled:
                    waiting = ", waiting for input" if idle else ""
                    self.notifier.status(f"{rate:.1f} predictions/s, {count} total, last: "
                                         f"{label or '-'}{waiting}")
