#!/usr/bin/env python3
"""Runtime speed: the bare runtime call against Classifier.classify on a 1280x720 camera frame.

For each runtime x model x precision x threads: median and p90 milliseconds of

- `bare`: `runtime.run(tensor)` on a ready input tensor (what the runtime alone costs);
- `classify`: `Classifier.classify(frame)` on a 1280x720 BGR frame (a real photo resized to
  720p, as a camera hands it over): preprocess + runtime + postprocess;
- `overhead`: the Classifier's own work, preprocess median + postprocess median, taken from the
  per-stage timings of the same classify calls (wall clock: on a loaded machine it includes
  time the thread waited for a core);
- `overhead cpu`: the same two stages timed again on their own in CPU time of the calling
  thread, with OpenCV held to that one thread, so waiting for a core does not count;
- `read floor`: right after another runtime call, a plain copy of the frame region the crop
  reads (630 x 630 x 3 bytes for a 256/224 model): what merely fetching those pixels costs
  once the frame has left the caches. Any preprocessing pays it; the rest of `overhead` is
  the Classifier's own work.

Bare call, classify and the read-floor copy are alternated call by call, so load from other
processes hits them alike. Models are
taken from the cache (`edge-classify models build ...` first); combinations that are not built
or that a runtime cannot load are listed as skipped.

    .venv/bin/python scripts/bench_runtimes.py [--runs 200] [--models squeezenet1.1,...]
        [--runtimes litert,onnxruntime,opencv] [--precisions int8,float] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_sdk.classifier import Classifier
from edge_sdk.errors import EdgeSDKError
from edge_sdk.preprocess import crop_box, read_image
from edge_sdk.types import Image

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGE_SDK_SHARED", REPO.parent / "shared"))


@dataclass(frozen=True)
class Row:
    runtime: str
    model: str
    precision: str
    threads: int
    bare: list[float]
    classify: list[float]
    preprocess: list[float]
    postprocess: list[float]
    cpu_overhead: list[float]
    read_floor: list[float]


def p90(values: list[float]) -> float:
    return float(np.percentile(values, 90))


def camera_frame(path: Path) -> Image:
    """A real photo resized to 1280x720 (stretched if need be): what a 720p camera delivers."""
    frame = cv2.resize(read_image(path), (1280, 720), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(frame, dtype=np.uint8)


def measure(clf: Classifier, frame: Image, runs: int, warmup: int) -> tuple[list[float], ...]:
    tensor = clf.preprocess(frame)
    top, left, height, width = crop_box(
        frame.shape[0], frame.shape[1], clf.card.resize_shorter, clf.card.input_size
    )
    region = frame[top : top + height, left : left + width]
    copy = np.empty_like(region)
    for _ in range(warmup):
        clf.runtime.run(tensor)
        clf.classify(frame)
    bare, total, pre, post, floor = [], [], [], [], []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        clf.runtime.run(tensor)
        t1 = time.perf_counter_ns()
        prediction = clf.classify(frame)
        t2 = time.perf_counter_ns()
        clf.runtime.run(tensor)
        t3 = time.perf_counter_ns()
        np.copyto(copy, region)
        t4 = time.perf_counter_ns()
        bare.append((t1 - t0) / 1e6)
        total.append((t2 - t1) / 1e6)
        pre.append(prediction.timings.preprocess)
        post.append(prediction.timings.postprocess)
        floor.append((t4 - t3) / 1e6)
    return bare, total, pre, post, floor


def measure_cpu_overhead(clf: Classifier, frame: Image, runs: int) -> list[float]:
    """Preprocess + postprocess in thread CPU time (ms), OpenCV on this thread only."""
    output = clf.runtime.run(clf.preprocess(frame)).copy()
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        times = []
        for _ in range(runs):
            t0 = time.thread_time_ns()
            clf.preprocess(frame)
            clf.top(clf.probabilities(output))
            times.append((time.thread_time_ns() - t0) / 1e6)
    finally:
        cv2.setNumThreads(threads)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="timed calls of each kind per row")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--models", default="squeezenet1.1,squeezenet1.1-caffe,squeezenet1.0-dc")
    parser.add_argument("--runtimes", default="litert,onnxruntime,opencv")
    parser.add_argument("--precisions", default="int8,float")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--image", type=Path, default=SHARED / "data" / "photos" / "chelsea.png")
    args = parser.parse_args()
    if args.runs < 5:
        parser.error("--runs must be at least 5")
    os.environ.setdefault("EDGE_SDK_MODEL_MIRROR", str(SHARED / "models"))
    frame = camera_frame(args.image)

    rows: list[Row] = []
    skipped: list[str] = []
    for runtime in args.runtimes.split(","):
        for model in args.models.split(","):
            for precision in args.precisions.split(","):
                for threads in (int(t) for t in args.threads.split(",")):
                    what = f"{runtime} {model} {precision} {threads}t"
                    try:
                        clf = Classifier.from_model(
                            model, runtime=runtime, precision=precision, num_threads=threads
                        )
                    except EdgeSDKError as exc:
                        skipped.append(f"{what}: {exc}")
                        break  # the same for every thread count
                    with clf:
                        bare, total, pre, post, floor = measure(clf, frame, args.runs, args.warmup)
                        cpu = measure_cpu_overhead(clf, frame, args.runs)
                    rows.append(
                        Row(runtime, model, precision, threads, bare, total, pre, post, cpu, floor)
                    )
                    print(f"measured {what}", file=sys.stderr, flush=True)

    load = os.getloadavg()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load "
        f"{load[0]:.1f}; {args.runs} runs per row; frame 1280x720 from {args.image.name}; ms"
    )
    header = (
        f"| {'runtime':<11} | {'model':<19} | {'precision':<9} | thr | bare p50 | bare p90 | "
        "classify p50 | classify p90 | overhead p50 | pre p50 | post p50 | overhead cpu p50 | "
        "read floor p50 |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for r in rows:
        pre_p50, post_p50 = statistics.median(r.preprocess), statistics.median(r.postprocess)
        print(
            f"| {r.runtime:<11} | {r.model:<19} | {r.precision:<9} | {r.threads:>3} | "
            f"{statistics.median(r.bare):>8.2f} | {p90(r.bare):>8.2f} | "
            f"{statistics.median(r.classify):>12.2f} | {p90(r.classify):>12.2f} | "
            f"{pre_p50 + post_p50:>12.3f} | {pre_p50:>7.3f} | {post_p50:>8.3f} | "
            f"{statistics.median(r.cpu_overhead):>16.3f} | {statistics.median(r.read_floor):>14.3f} |"
        )
    for line in skipped:
        print(f"skipped: {line}")


if __name__ == "__main__":
    main()
