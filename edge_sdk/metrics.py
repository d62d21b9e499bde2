"""Thread-safe run metrics: per-stage latency, frame rates, drops, sink health and gauges.

One `Metrics` object belongs to each `Pipeline` (``pipeline.metrics``). The inference thread
and the sink workers write to it; anyone may read it with `Metrics.snapshot`, which returns
plain JSON-ready data (no numpy, no infinities), so a web endpoint can serve it as JSON or
turn it into Prometheus text without touching this module's internals.

Snapshot layout (all durations in milliseconds)::

    {
      "uptime_s": 12.3,
      "frames_in": 370,         # frames the source delivered (capture counter)
      "frames_out": 120,        # predictions published
      "frames_dropped": 250,    # frames replaced in the newest-frame slot before inference
      "reconnects": 0,
      "fps_in": 30.1,           # over the last few seconds
      "fps_out": 9.8,
      "errors": 0,              # frames the classifier failed on
      "stages": {
        "inference": {"count": 120, "sum_ms": 912.0, "p50_ms": 7.5, "p95_ms": 9.1,
                      "max_ms": 11.0, "le_ms": [0.5, 1.0, ...], "cumulative": [0, 0, ..., 120]},
        ...                     # capture_wait, decode, preprocess, inference, postprocess,
      },                        # sink, age
      "sinks": {
        "jsonl": {"published": 120, "dropped": 0, "errors": 0, "queue": 0,
                  "lossless": true, "p50_ms": 0.02, "p95_ms": 0.05},
        ...
      },
      "gauges": {"mqtt_queue": 0.0, ...}
    }

`capture_wait` is the time inference waited for a frame and nothing else: JPEG sources (MJPEG
streams and files, USB cameras in MJPG) hand the inference thread an encoded frame, and decoding
it is the `decode` stage, observed only for frames decoded there (its `count` stays 0 for sources
decoded in the capture thread: H.264, raw cameras, ``keep_all`` runs).

`p50_ms`/`p95_ms`/`max_ms` are over a rolling window of the last `window` observations (the
present, not the whole run); `count`, `sum_ms` and the histogram are cumulative since start,
as Prometheus expects. ``cumulative`` has one more entry than ``le_ms``: the last is the
``+Inf`` bucket (equal to ``count``). `prometheus_buckets` converts a stage to the
``(le, cumulative)`` pairs prometheus_client's ``HistogramMetricFamily`` takes, in seconds.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from edge_sdk.types import Timings

log = logging.getLogger(__name__)

#: The stages every pipeline reports, in the order a frame goes through them.
STAGES: tuple[str, ...] = (
    "capture_wait", "decode", "preprocess", "inference", "postprocess", "sink", "age",
)

#: Upper bounds (ms) of the cumulative histogram buckets; a final +Inf bucket is implied.
BUCKETS_MS: tuple[float, ...] = (
    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 35.0, 50.0, 75.0, 100.0, 150.0, 250.0, 500.0, 1000.0,
    2500.0, 5000.0,
)

#: Rates are computed over roughly this many seconds of recent samples.
RATE_WINDOW_S = 5.0


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile of an already sorted list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


class StageStats:
    """Latency statistics of one stage: a rolling window plus a cumulative histogram.

    Not thread-safe on its own; `Metrics` guards it with its lock.

    Args:
        window: How many recent observations the percentiles cover.
    """

    def __init__(self, window: int = 512) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self._recent: deque[float] = deque(maxlen=window)
        self._buckets = [0] * (len(BUCKETS_MS) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, ms: float) -> None:
        """Record one duration in milliseconds (negative values count as 0)."""
        ms = max(0.0, float(ms))
        self._recent.append(ms)
        self._buckets[bisect.bisect_left(BUCKETS_MS, ms)] += 1
        self.count += 1
        self.total += ms

    def percentile(self, q: float) -> float:
        """Return the `q` quantile (0..1) of the rolling window."""
        return _percentile(sorted(self._recent), q)

    def snapshot(self) -> dict[str, Any]:
        recent = sorted(self._recent)
        cumulative: list[int] = []
        running = 0
        for n in self._buckets:
            running += n
            cumulative.append(running)
        return {
            "count": self.count,
            "sum_ms": round(self.total, 3),
            "p50_ms": round(_percentile(recent, 0.50), 3),
            "p95_ms": round(_percentile(recent, 0.95), 3),
            "max_ms": round(recent[-1], 3) if recent else 0.0,
            "le_ms": list(BUCKETS_MS),
            "cumulative": cumulative,
        }


class RateMeter:
    """Events per second over the last `RATE_WINDOW_S` seconds, from samples of a running total.

    Works both for totals kept here (`add`) and for counters owned elsewhere and sampled now
    and then (`sample`), such as the capture thread's frame counter.
    """

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self.total = 0
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, n: int = 1, now: float | None = None) -> None:
        self.sample(self.total + n, now)

    def sample(self, total: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.total = total
        self._samples.append((now, total))
        # Keep one sample older than the window so the rate spans the whole window.
        while len(self._samples) > 2 and self._samples[1][0] < now - self.window_s:
            self._samples.popleft()
        if len(self._samples) > 4096:
            self._samples.popleft()

    def rate(self, now: float | None = None) -> float:
        """Return the recent rate; 0.0 when nothing happened during the window."""
        if len(self._samples) < 2:
            return 0.0
        now = time.monotonic() if now is None else now
        t0, v0 = self._samples[0]
        t1, v1 = self._samples[-1]
        if t1 < now - self.window_s:  # nothing new for a whole window: stalled
            return 0.0
        span = max(now, t1) - t0
        return (v1 - v0) / span if span > 0 else 0.0


class _SinkStats:
    def __init__(self, lossless: bool, queue_depth: Callable[[], int] | None) -> None:
        self.lossless = lossless
        self.queue_depth = queue_depth
        self.published = 0
        self.dropped = 0
        self.errors = 0
        self.latency = StageStats(window=256)


class Metrics:
    """Thread-safe counters and latency statistics of one pipeline run.

    Writers: the pipeline's inference thread (`record_prediction`, `sample_source`), sink
    workers (`sink_published`, `sink_dropped`, `sink_error`) and plugins (`register_gauge`).
    Readers: `snapshot` from any thread.

    Args:
        window: Observations per stage kept for the rolling percentiles.
    """

    def __init__(self, window: int = 512) -> None:
        self._lock = threading.Lock()
        self._window = window
        self._start = time.monotonic()
        self._stages: dict[str, StageStats] = {s: StageStats(window) for s in STAGES}
        self._in = RateMeter()
        self._out = RateMeter()
        self._dropped = 0
        self._reconnects = 0
        self._errors = 0
        self._sinks: dict[str, _SinkStats] = {}
        self._gauges: dict[str, Callable[[], float]] = {}
        self._source_counters: Callable[[], tuple[int, int, int]] | None = None

    # -- writers ------------------------------------------------------------------------------

    def reset_clock(self) -> None:
        """Start `uptime_s` now (the pipeline calls it when it starts)."""
        with self._lock:
            self._start = time.monotonic()

    def observe(self, stage: str, ms: float) -> None:
        """Record one duration (ms) of `stage`; unknown stage names get their own statistics."""
        with self._lock:
            stats = self._stages.get(stage)
            if stats is None:
                stats = self._stages[stage] = StageStats(self._window)
            stats.observe(ms)

    def record_prediction(self, timings: Timings, *, decode: float | None = None) -> None:
        """Count one published prediction and record its per-stage timings.

        Args:
            timings: The prediction's timings.
            decode: Milliseconds the inference thread spent decoding its frame; None when the
                frame arrived decoded (the `decode` stage then records nothing).
        """
        with self._lock:
            for stage in ("capture_wait", "preprocess", "inference", "postprocess", "age"):
                self._stages[stage].observe(getattr(timings, stage))
            if decode is not None:
                self._stages["decode"].observe(decode)
            self._out.add(1)

    def record_error(self) -> None:
        """Count a frame the classifier failed on."""
        with self._lock:
            self._errors += 1

    def bind_source(self, counters: Callable[[], tuple[int, int, int]]) -> None:
        """Tell the metrics how to read the capture counters (frames in, dropped, reconnects).

        The callable is sampled by `sample_source` and by every `snapshot`; it must be cheap
        and thread-safe (reading a few ints is).
        """
        with self._lock:
            self._source_counters = counters
        self.sample_source()

    def sample_source(self) -> None:
        """Read the capture counters now (the inference thread calls this once per frame)."""
        fn = self._source_counters
        if fn is None:
            return
        try:
            frames_in, dropped, reconnects = fn()
        except Exception:  # a broken counter must not break the run
            log.debug("reading the capture counters failed", exc_info=True)
            return
        with self._lock:
            self._in.sample(int(frames_in))
            self._dropped = int(dropped)
            self._reconnects = int(reconnects)

    def register_sink(
        self, name: str, *, lossless: bool, queue_depth: Callable[[], int] | None = None
    ) -> None:
        """Add a sink to the report; `queue_depth` returns its current backlog."""
        with self._lock:
            self._sinks[name] = _SinkStats(lossless, queue_depth)

    def _sink(self, name: str) -> _SinkStats:
        stats = self._sinks.get(name)
        if stats is None:
            stats = self._sinks[name] = _SinkStats(False, None)
        return stats

    def sink_published(self, name: str, ms: float) -> None:
        """Count one successful `publish` of sink `name` that took `ms`."""
        with self._lock:
            stats = self._sink(name)
            stats.published += 1
            stats.latency.observe(ms)
            self._stages["sink"].observe(ms)

    def sink_dropped(self, name: str, n: int = 1) -> None:
        """Count predictions sink `name` never got (newest-wins replacement or queue overflow)."""
        with self._lock:
            self._sink(name).dropped += n

    def sink_error(self, name: str) -> None:
        """Count one `publish` of sink `name` that raised."""
        with self._lock:
            self._sink(name).errors += 1

    def register_gauge(self, name: str, fn: Callable[[], float]) -> None:
        """Report ``fn()`` under ``gauges[name]`` in every snapshot (e.g. an MQTT queue depth).

        `fn` is called from whichever thread takes the snapshot, so it must be thread-safe and
        quick. If it raises, the gauge reads None in that snapshot.

        Raises:
            ValueError: `name` is empty or already registered.
        """
        if not name:
            raise ValueError("a gauge needs a name")
        with self._lock:
            if name in self._gauges:
                raise ValueError(f"gauge {name!r} is already registered")
            self._gauges[name] = fn

    # -- readers ------------------------------------------------------------------------------

    def rates(self) -> tuple[float, float]:
        """Return (frames in, predictions out) per second, cheaply (for per-frame overlays)."""
        now = time.monotonic()
        with self._lock:
            return self._in.rate(now), self._out.rate(now)

    def stage(self, name: str) -> dict[str, Any]:
        """Return the snapshot of one stage (see the module docstring)."""
        with self._lock:
            stats = self._stages.get(name) or StageStats(1)
            return stats.snapshot()

    def snapshot(self) -> dict[str, Any]:
        """Return everything as plain JSON-ready data; see the module docstring for the layout."""
        self.sample_source()
        gauges: dict[str, float | None] = {}
        with self._lock:
            gauge_fns = list(self._gauges.items())
        for name, fn in gauge_fns:  # outside the lock: a gauge may take its own locks
            try:
                gauges[name] = float(fn())
            except Exception:  # noqa: BLE001 - a broken gauge reads None, the rest still report
                gauges[name] = None
        depths: dict[str, int | None] = {}
        with self._lock:
            sink_fns = [(n, s.queue_depth) for n, s in self._sinks.items()]
        for name, depth in sink_fns:
            try:
                depths[name] = int(depth()) if depth is not None else 0
            except Exception:  # noqa: BLE001 - same as a gauge
                depths[name] = None
        now = time.monotonic()
        with self._lock:
            return {
                "uptime_s": round(now - self._start, 3),
                "frames_in": self._in.total,
                "frames_out": self._out.total,
                "frames_dropped": self._dropped,
                "reconnects": self._reconnects,
                "fps_in": round(self._in.rate(now), 2),
                "fps_out": round(self._out.rate(now), 2),
                "errors": self._errors,
                "stages": {name: s.snapshot() for name, s in self._stages.items()},
                "sinks": {
                    name: {
                        "published": s.published,
                        "dropped": s.dropped,
                        "errors": s.errors,
                        "queue": depths.get(name),
                        "lossless": s.lossless,
                        "p50_ms": round(s.latency.percentile(0.5), 3),
                        "p95_ms": round(s.latency.percentile(0.95), 3),
                    }
                    for name, s in self._sinks.items()
                },
                "gauges": gauges,
            }


def prometheus_buckets(stage: dict[str, Any], scale: float = 1e-3) -> list[tuple[str, float]]:
    """Turn a stage snapshot's histogram into ``(le, cumulative)`` pairs, ``+Inf`` last.

    Args:
        stage: One entry of ``snapshot()["stages"]``.
        scale: Multiplies the millisecond bounds; the default gives seconds, Prometheus's unit.
    """
    bounds: list[float] = stage["le_ms"]
    counts: list[int] = stage["cumulative"]
    pairs = [(repr(round(float(b) * scale, 9)), float(c)) for b, c in zip(bounds, counts[:-1], strict=True)]
    pairs.append(("+Inf", float(counts[-1])))
    return pairs
