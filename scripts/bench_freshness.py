#!/usr/bin/env python3
"""Freshness: how old is the frame a prediction describes, when inference is slower than the camera?

A real MJPEG-over-HTTP camera runs on loopback (tests/support/mjpeg_server.py: 1280x720 photos at
30 fps, each frame's number stamped in its pixels, the moment each frame was written to the
socket recorded). Inference is made slower than the frame rate: the int8 model on 1 thread plus
an added per-frame load (a sleep after each runtime call, standing in for a heavier model).

- edge-classify: the Pipeline, a sink reads the stamped number off each published frame. Age at
  publish = publish time - send time of that frame number.
- sequential: the examples' loop (cv2.VideoCapture on the stream URL, read, convert, resize,
  infer, draw), the age measured the same way right after drawing.

Each run lasts --seconds (after --warmup s not counted); the two alternate for --runs rounds.
The acceptance rule: edge-classify's age p95 <= its preprocess + inference p50 + 2 frame
intervals. The sequential loop works through a backlog of buffered frames, so its age grows.

Usage: .venv/bin/python scripts/bench_freshness.py [--runs 5] [--seconds 12] [--load-ms 50]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("EDGE_SDK_MODEL_MIRROR", str(REPO.parent / "shared" / "models"))

from support.mjpeg_server import MjpegServer, photo_frame_maker  # noqa: E402

from edge_sdk.classifier import Classifier  # noqa: E402
from edge_sdk.pipeline import Pipeline, choose_reduce  # noqa: E402
from edge_sdk.sources.synthetic import read_number  # noqa: E402
from edge_sdk.types import Frame, Prediction  # noqa: E402


class LoadedRuntime:
    """A runtime that takes `extra_ms` longer per call (sleeping, so it adds time, not CPU)."""

    def __init__(self, inner: Any, extra_ms: float) -> None:
        self.inner = inner
        self.extra_s = extra_ms / 1000
        self.model_format = inner.model_format
        self.input_spec = inner.input_spec
        self.output_spec = inner.output_spec

    def run(self, tensor: npt.NDArray[Any]) -> npt.NDArray[Any]:
        out: npt.NDArray[Any] = self.inner.run(tensor)
        time.sleep(self.extra_s)
        return out

    def close(self) -> None:
        self.inner.close()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q * 100)) if values else float("nan")


class AgeSink:
    """Reads the stamped frame number of each published frame; records true age at publish."""

    lossless = True
    name = "age"

    def __init__(self, server: MjpegServer, after_ns: int) -> None:
        self.server = server
        self.after_ns = after_ns
        self.ages: list[float] = []
        self.unreadable = 0

    def publish(self, prediction: Prediction, frame: Frame | None) -> None:
        assert frame is not None
        published_ns = frame.timestamp_ns + int(prediction.timings.age * 1e6)
        if published_ns < self.after_ns:
            return
        number = read_number(frame.image)
        sent = self.server.sent_ns.get(number) if number is not None else None
        if sent is None:
            self.unreadable += 1
            return
        self.ages.append((published_ns - sent) / 1e6)

    def close(self) -> None:
        pass


def run_pipeline(server: MjpegServer, clf: Classifier, seconds: float, warmup: float,
                 reduce: int) -> dict[str, Any]:
    sink = AgeSink(server, time.monotonic_ns() + int(warmup * 1e9))
    # The age sink must see frames to read their numbers; reduce is passed explicitly so the
    # pipeline decodes as `edge-classify --json` (no sink wanting frames) would.
    pipeline = Pipeline(server.url, clf, [sink], reduce=reduce)
    timer = threading.Timer(warmup + seconds, pipeline.request_stop)
    timer.start()
    snapshot = pipeline.run()
    timer.cancel()
    stages = snapshot["stages"]
    return {
        "ages": sink.ages,
        "work_p50": stages["preprocess"]["p50_ms"] + stages["inference"]["p50_ms"],
        "fps": snapshot["frames_out"] / snapshot["uptime_s"],
        "unreadable": sink.unreadable,
    }


def run_sequential(server: MjpegServer, clf: Classifier, seconds: float,
                   warmup: float) -> dict[str, Any]:
    height, width = clf.card.input_size
    int8 = clf.runtime.input_spec.dtype == "int8"
    cap = cv2.VideoCapture(server.url, cv2.CAP_FFMPEG)
    started = time.monotonic()
    ages: list[float] = []
    frames = 0
    unreadable = 0
    while time.monotonic() - started < warmup + seconds:
        ok, image = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        small = cv2.resize(rgb, (width, height))
        # cv2 types its frames as any numeric array; these are uint8.
        tensor: npt.NDArray[Any] = np.ascontiguousarray(small[:, :, ::-1])
        if int8:
            tensor = (tensor ^ np.uint8(0x80)).view(np.int8)
        top = clf.top(clf.probabilities(clf.runtime.run(tensor[np.newaxis])))
        text = f"{top[0].name} {top[0].score:.2f}" if top else "-"
        cv2.putText(image, text, (24, 48), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 255, 0), 2)
        now = time.monotonic_ns()
        frames += 1
        if time.monotonic() - started < warmup:
            continue
        number = read_number(cast(npt.NDArray[np.uint8], image))
        sent = server.sent_ns.get(number) if number is not None else None
        if sent is None:
            unreadable += 1
            continue
        ages.append((now - sent) / 1e6)
    cap.release()
    return {"ages": ages, "fps": frames / (time.monotonic() - started), "unreadable": unreadable}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=12.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds not counted per run")
    parser.add_argument("--load-ms", type=float, default=50.0, help="added per-frame load")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default="squeezenet1.1")
    args = parser.parse_args()

    size = (1280, 720)
    base = Classifier.from_model(args.model, runtime="litert", num_threads=args.threads)
    clf = Classifier(LoadedRuntime(base.runtime, args.load_ms), base.card, top_k=3)
    reduce = choose_reduce(size, clf.card.input_size, clf.card.resize_shorter)  # type: ignore[arg-type]
    server = MjpegServer(fps=args.fps, size=size, frames=photo_frame_maker(size)).start()
    interval = 1000 / args.fps
    results: dict[str, list[dict[str, Any]]] = {"edge-classify": [], "sequential": []}
    try:
        for run in range(args.runs):
            order = ["sequential", "edge-classify"] if run % 2 else ["edge-classify", "sequential"]
            for kind in order:
                if kind == "edge-classify":
                    r = run_pipeline(server, clf, args.seconds, args.warmup, reduce)
                else:
                    r = run_sequential(server, clf, args.seconds, args.warmup)
                results[kind].append(r)
                print(f"run {run + 1} {kind:13s}: {len(r['ages'])} predictions, {r['fps']:.1f} "
                      f"fps, age p50 {percentile(r['ages'], .5):.0f} ms, p95 "
                      f"{percentile(r['ages'], .95):.0f} ms, max {max(r['ages'], default=0):.0f} "
                      f"ms", file=sys.stderr)
    finally:
        server.stop()
        base.close()

    print(f"\nmachine: {platform.machine()} {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; stream 1280x720 MJPEG at {args.fps:g} fps on loopback; "
          f"{args.model} int8 litert {args.threads} thread(s) + {args.load_ms:g} ms load per "
          f"frame; {args.runs} runs x {args.seconds:g} s, alternated; medians over runs")
    print(f"{'loop':<15}{'fps':>7}{'age p50 ms':>12}{'age p95 ms':>12}{'age max ms':>12}"
          f"{'limit ms':>10}")
    ok = True
    for kind, runs in results.items():
        fps = statistics.median(r["fps"] for r in runs)
        p50 = statistics.median(percentile(r["ages"], 0.5) for r in runs)
        p95 = statistics.median(percentile(r["ages"], 0.95) for r in runs)
        worst = statistics.median(max(r["ages"], default=0.0) for r in runs)
        limit = ""
        if kind == "edge-classify":
            work = statistics.median(r["work_p50"] for r in runs)
            bound = work + 2 * interval
            limit = f"{bound:.0f}"
            ok = p95 <= bound
        print(f"{kind:<15}{fps:>7.1f}{p50:>12.0f}{p95:>12.0f}{worst:>12.0f}{limit:>10}")
    print("limit = preprocess + inference p50 + 2 frame intervals "
          f"({2 * interval:.0f} ms): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
