"""``/metrics``: a pipeline's `Metrics` snapshot in Prometheus text format.

A custom collector reads the snapshot at scrape time, so nothing is counted twice and nothing
lands in prometheus_client's global registry (two pipelines in one process, or a test suite,
never collide). Names follow Prometheus conventions: seconds, ``_total`` counters, one
histogram with a ``stage`` label.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from edge_sdk.errors import BackendUnavailable
from edge_sdk.metrics import prometheus_buckets

try:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise BackendUnavailable(
        "the web view's /metrics needs prometheus-client: pip install 'edge-sdk[web]'"
    ) from exc

PREFIX = "edge_sdk"

Snapshot = dict[str, Any]


def _metric_name(name: str) -> str:
    """Make a gauge name (e.g. "mqtt.queue") a valid Prometheus name fragment."""
    cleaned = re.sub(r"[^a-zA-Z0-9_]", "_", name).strip("_")
    return cleaned or "unnamed"


class SnapshotCollector:
    """Yields Prometheus metric families from a `Metrics.snapshot()`-shaped dict.

    Args:
        snapshot: Returns the current snapshot (see edge_sdk.metrics for its layout).
        extra: Returns the web view's own figures: gauges and counters by name.
    """

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        extra: Callable[[], dict[str, tuple[str, float, str]]] | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._extra = extra

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        yield from self._run(snap)
        yield from self._stages(snap.get("stages", {}))
        yield from self._sinks(snap.get("sinks", {}))
        for name, value in snap.get("gauges", {}).items():
            if value is None:
                continue
            metric = f"{PREFIX}_{_metric_name(name)}"
            if metric.endswith("_total"):
                # A plugin's running count (mqtt_published_total, ...): a counter to Prometheus,
                # so rate() works and the name keeps the convention; the family adds "_total".
                yield CounterMetricFamily(metric[: -len("_total")],
                                          f"Counter {name!r} registered by a plugin", value=float(value))
            else:
                yield GaugeMetricFamily(metric, f"Gauge {name!r} registered by a plugin",
                                        value=float(value))
        if self._extra is not None:
            for name, (kind, value, doc) in self._extra().items():
                family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                yield family(f"{PREFIX}_{name}", doc, value=float(value))

    @staticmethod
    def _run(snap: Snapshot) -> Iterator[Metric]:
        counters = (
            ("frames_in", "frames_in", "Frames the source delivered"),
            ("predictions", "frames_out", "Predictions published"),
            ("frames_dropped", "frames_dropped",
             "Frames replaced by a newer one before inference (newest-frame slot)"),
            ("reconnects", "reconnects", "Times a live source was reopened"),
            ("classify_errors", "errors", "Frames the classifier failed on"),
        )
        for name, key, doc in counters:
            if key in snap:
                yield CounterMetricFamily(f"{PREFIX}_{name}", doc, value=float(snap[key]))
        gauges = (
            ("input_fps", "fps_in", "Frames per second from the source, over the last seconds"),
            ("output_fps", "fps_out", "Predictions per second, over the last seconds"),
            ("uptime_seconds", "uptime_s", "Seconds since the pipeline started"),
        )
        for name, key, doc in gauges:
            if key in snap:
                yield GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=float(snap[key]))

    @staticmethod
    def _stages(stages: dict[str, Any]) -> Iterator[Metric]:
        if not stages:
            return
        family = HistogramMetricFamily(
            f"{PREFIX}_stage_seconds",
            "Duration of each stage of a prediction (capture_wait, decode, preprocess, "
            "inference, postprocess, sink) and the frame's age at publish (age)",
            labels=["stage"],
        )
        for stage, data in stages.items():
            family.add_metric([stage], prometheus_buckets(data), float(data["sum_ms"]) / 1e3)
        yield family

    @staticmethod
    def _sinks(sinks: dict[str, Any]) -> Iterator[Metric]:
        if not sinks:
            return
        published = CounterMetricFamily(
            f"{PREFIX}_sink_published", "Predictions a sink published", labels=["sink"])
        dropped = CounterMetricFamily(
            f"{PREFIX}_sink_dropped",
            "Predictions a sink never got: replaced by a newer one (visual sinks) or refused "
            "by a full queue (lossless sinks)", labels=["sink"])
        errors = CounterMetricFamily(
            f"{PREFIX}_sink_errors", "Publish calls that raised", labels=["sink"])
        queue = GaugeMetricFamily(
            f"{PREFIX}_sink_queue", "Predictions waiting in a sink's queue", labels=["sink"])
        for name, data in sinks.items():
            published.add_metric([name], float(data.get("published", 0)))
            dropped.add_metric([name], float(data.get("dropped", 0)))
            errors.add_metric([name], float(data.get("errors", 0)))
            if data.get("queue") is not None:
                queue.add_metric([name], float(data["queue"]))
        yield from (published, dropped, errors, queue)


class PrometheusExport:
    """Renders a `SnapshotCollector` through a private registry.

    Args: as `SnapshotCollector`.
    """

    content_type: str = CONTENT_TYPE_LATEST

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        extra: Callable[[], dict[str, tuple[str, float, str]]] | None = None,
    ) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(SnapshotCollector(snapshot, extra))

    def render(self) -> bytes:
        """Return the text exposition of every metric, as of now."""
        body: bytes = generate_latest(self._registry)
        return body
