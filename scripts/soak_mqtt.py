#!/usr/bin/env python3
"""MQTT soak: 10,000 predictions through the MQTT sink as fast as they come; RSS growth and loss.

Each run is its own process (so one run's memory does not leak into the next) with its own
Mosquitto broker on a free loopback port, and a subscriber in a third process that counts the
frame indices it receives. The pipeline mode is the service's real path: a synthetic source
read as fast as the real int8 SqueezeNet on LiteRT classifies it, every prediction kept
(``keep_all``), published at QoS 1. The direct mode calls ``MqttSink.publish`` in a loop, far
faster than any camera, waiting for acknowledgements whenever `--window` predictions are
outstanding (``--window 0`` never waits: the queue then holds most of the run, and RSS grows by
its size, about 1 KB per queued prediction).

RSS growth is measured from the end of a warm-up (the first `--warmup` predictions: imports,
interpreter, buffers and paho's queue reach their working size) to the end of the run, after
everything was acknowledged.

    .venv/bin/python scripts/soak_mqtt.py                 # 5 runs x 10,000, pipeline mode
    .venv/bin/python scripts/soak_mqtt.py --mode direct --runs 5 [--window 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


def rss_mb() -> float:
    """Resident set size of this process, from /proc (MB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def subscriber(host: str, port: int, topic: str, expected: int, timeout: float) -> None:
    """Count distinct frame indices on `topic` until `expected` arrived or `timeout`; print JSON."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    seen: set[int] = set()
    total = 0
    done = threading.Event()
    subscribed = threading.Event()

    def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
        c.subscribe(topic, qos=1)

    def on_subscribe(c: Any, u: Any, mid: Any, rcs: Any, p: Any) -> None:
        subscribed.set()
        print("subscribed", flush=True)

    def on_message(c: Any, u: Any, msg: Any) -> None:
        nonlocal total
        total += 1
        seen.add(json.loads(msg.payload)["frame"])
        if len(seen) >= expected:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="soak-subscriber")
    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    client.connect(host, port)
    client.loop_start()
    done.wait(timeout)
    client.disconnect()
    client.loop_stop()
    missing = sorted(set(range(expected)) - seen)
    print(json.dumps({"received": total, "distinct": len(seen), "missing": len(missing),
                      "first_missing": missing[:10]}), flush=True)


def one_run(mode: str, count: int, warmup: int, threads: int, window: int) -> dict[str, Any]:
    """One soak in this process; returns its numbers."""
    from support.mosquitto import Mosquitto

    from edge_sdk.sinks.mqtt import MqttSink
    from edge_sdk.types import Label, Prediction, Timings

    folder = Path(tempfile.mkdtemp(prefix="soak-mqtt-"))
    broker = Mosquitto(folder, verbose=False)  # its log would grow in this process
    broker.start()
    topic = "edge-sdk/soak/prediction"
    sub = subprocess.Popen(
        [sys.executable, __file__, "--subscriber", broker.host, str(broker.port), topic,
         str(count)], stdout=subprocess.PIPE, text=True)
    assert sub.stdout is not None
    assert sub.stdout.readline().strip() == "subscribed"
    sink = MqttSink(host=broker.host, port=broker.port, device_id="soak", discovery=False,
                    queue_size=count)
    assert sink.wait_connected(10)
    marks: dict[str, float] = {}
    peak = [0.0]

    def mark(n: int) -> None:
        if n == warmup:
            marks["rss_warm"] = rss_mb()
            marks["t_warm"] = time.perf_counter()
        if n % 500 == 0:
            peak[0] = max(peak[0], rss_mb())

    marks["rss_start"] = rss_mb()
    start = time.perf_counter()
    if mode == "direct":
        top = (Label(281, "tabby, tabby cat", 0.8125), Label(282, "tiger cat", 0.125))
        for i in range(count):
            sink.publish(Prediction(i, time.monotonic_ns(), top, Timings(0.1, 1.2, 8.5, 0.1, 10.0),
                                    "squeezenet1.1"), None)
            mark(i + 1)
            if window and sink.queue_depth >= window:
                sink.flush(60)  # the broker's pace: wait for the acknowledgements
        sink.flush(60)
        sink.close()
    else:
        from edge_sdk.classifier import Classifier
        from edge_sdk.pipeline import Pipeline

        n = [0]

        class Counter:
            """Counts predictions after the MQTT sink saw them (for the warm-up mark)."""

            lossless = True
            wants_frames = False

            def publish(self, prediction: Prediction, frame: object) -> None:
                n[0] += 1
                mark(n[0])

            def close(self) -> None:
                """Nothing to release."""

        with Classifier.from_model("squeezenet1.1", num_threads=threads) as clf:
            pipeline = Pipeline(f"test://?size=320x240&live=0&count={count}", clf,
                                [sink, Counter()], keep_all=True)
            snapshot = pipeline.run()  # closes the sink (drains, publishes offline)
        marks["gauges"] = snapshot.get("gauges", {})  # type: ignore[assignment]
    elapsed = time.perf_counter() - start
    marks["rss_end"] = rss_mb()
    out, _ = sub.communicate(timeout=120)
    received = json.loads(out.strip().splitlines()[-1])
    broker.stop()
    stats = sink.stats()
    return {
        "mode": mode, "count": count, "seconds": round(elapsed, 2),
        "rate": round(count / elapsed, 1),
        "rss_start_mb": round(marks["rss_start"], 1), "rss_warm_mb": round(marks["rss_warm"], 1),
        "rss_end_mb": round(marks["rss_end"], 1),
        "rss_growth_mb": round(marks["rss_end"] - marks["rss_warm"], 2),
        "rss_peak_mb": round(max(peak[0], marks["rss_end"]), 1),
        "published": stats["published"], "overflow": stats["overflow"],
        "received": received["received"], "lost": received["missing"],
        "first_missing": received["first_missing"],
        "gauges": marks.get("gauges", {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("pipeline", "direct"), default="pipeline")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--window", type=int, default=500,
                        help="direct mode: unacknowledged predictions before the loop waits for "
                             "the broker (0: never wait; RSS then grows with the queue)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--subscriber", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscriber:
        host, port, topic, expected = args.subscriber
        subscriber(host, int(port), topic, int(expected), timeout=600)
        return
    if args.one:
        print(json.dumps(one_run(args.mode, args.count, args.warmup, args.threads, args.window)),
              flush=True)
        return
    results = []
    for run in range(args.runs):
        out = subprocess.run([sys.executable, __file__, "--one", "--mode", args.mode, "--count",
                              str(args.count), "--warmup", str(args.warmup), "--threads",
                              str(args.threads), "--window", str(args.window)],
                             capture_output=True, text=True, timeout=1800,
                             env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if out.returncode != 0:
            sys.exit(f"run {run + 1} failed:\n{out.stderr[-3000:]}")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"run {run + 1}: {r['count']} predictions in {r['seconds']} s ({r['rate']}/s), "
              f"RSS {r['rss_warm_mb']} -> {r['rss_end_mb']} MB (+{r['rss_growth_mb']}), "
              f"lost {r['lost']}, overflow {r['overflow']}", file=sys.stderr)
    cpu = platform.processor() or platform.machine()
    window = f", window={args.window}" if args.mode == "direct" else ""
    print(f"\nMQTT soak, mode={args.mode}{window}, {args.count} predictions x {args.runs} runs, "
          f"QoS 1, "
          f"{platform.node()} ({cpu}, {os.cpu_count()} cores), Python {platform.python_version()}")
    header = ("run", "rate/s", "RSS warm MB", "RSS end MB", "growth MB", "peak MB", "published",
              "received", "lost", "overflow")
    print(" | ".join(header))
    for i, r in enumerate(results, 1):
        print(" | ".join(str(v) for v in (i, r["rate"], r["rss_warm_mb"], r["rss_end_mb"],
                                          r["rss_growth_mb"], r["rss_peak_mb"], r["published"],
                                          r["received"], r["lost"], r["overflow"])))
    med = {k: statistics.median(r[k] for r in results)
           for k in ("rate", "rss_growth_mb", "rss_peak_mb")}
    print(f"median: {med['rate']:.1f} predictions/s, RSS growth {med['rss_growth_mb']:.2f} MB "
          f"(max {max(r['rss_growth_mb'] for r in results):.2f}), peak {med['rss_peak_mb']:.1f} MB, "
          f"lost {sum(r['lost'] for r in results)} of {args.count * args.runs}")
    worst = max(r["rss_growth_mb"] for r in results)
    ok = worst <= 5.0 and all(r["lost"] == 0 for r in results)
    print("PASS: RSS growth <= 5 MB and none lost" if ok else "FAIL: see the table")
    if results[0].get("gauges"):
        print("pipeline gauges at the end of run 1:", results[0]["gauges"])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
