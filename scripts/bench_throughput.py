#!/usr/bin/env python3
"""Throughput: edge-classify's pipeline against a plain sequential loop, on every frame of a file.

The sequential loop is how the TFLite and MediaPipe Raspberry Pi examples classify a camera:
``cap.read()`` (OpenCV decodes the whole frame), ``cvtColor`` BGR->RGB, ``resize`` to the model
input, invoke, then draw the label on the frame, one frame after another. It runs the same
int8 model on the same runtime with the same thread count (its own interpreter instance, so
neither warms the other), and feeds the model correctly (our model takes BGR, so the RGB image
is flipped back while being quantized: the same pass the examples' quantize step makes).

edge-classify runs as ``edge-classify --source VIDEO --every-frame --no-display --json
/dev/null`` would: the same Pipeline and JSON-lines sink, in this process (so start-up is not
counted for either). Runs alternate (sequential, pipeline, pipeline, sequential, ...) so load
from other processes hits both alike. A third figure is bare inference: the runtime called in a
loop on a ready tensor, same threads: the ceiling any loop can reach.

Usage: .venv/bin/python scripts/bench_throughput.py [--runs 5] [--frames 600] [--threads 1]
Prints a table (medians) and the per-run numbers; exits 1 if an MJPEG median ratio is < 1.25.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("EDGE_SDK_MODEL_MIRROR", str(REPO.parent / "shared" / "models"))

from support.media import make_video  # noqa: E402

from edge_sdk.classifier import Classifier  # noqa: E402
from edge_sdk.cli.run import build_sinks  # noqa: E402
from edge_sdk.models import store  # noqa: E402
from edge_sdk.pipeline import Pipeline  # noqa: E402


def bench_videos(folder: Path, frames: int) -> dict[str, Path]:
    """1280x720 videos of real photos, made once and kept in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for codec, name in (("mjpeg", f"photos-720p-{frames}.avi"), ("h264", f"photos-720p-{frames}.mp4")):
        path = folder / name
        if not path.exists():
            print(f"making {path} ({frames} frames, {codec}) ...", file=sys.stderr)
            tmp = path.with_suffix(".part" + path.suffix)
            make_video(tmp, codec=codec, size=(1280, 720), frames=frames, fps=30)
            tmp.rename(path)
        out[codec] = path
    return out


def sequential(video: Path, clf: Classifier) -> tuple[int, float]:
    """The examples' loop; returns (frames, seconds)."""
    height, width = clf.card.input_size
    int8 = clf.runtime.input_spec.dtype == "int8"
    started = time.perf_counter()
    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    frames = 0
    while True:
        ok, image = cap.read()  # read: the whole frame decoded
        if not ok:
            break
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # convert
        small = cv2.resize(rgb, (width, height))  # resize
        # To the input type (raw pixels: uint8 as is, int8 = pixel - 128), flipping back to
        # the BGR our model takes in the same pass.
        # cv2 types its result as any numeric array; uint8 in gives uint8 out.
        tensor: np.ndarray = np.ascontiguousarray(small[:, :, ::-1])
        if int8:
            tensor = (tensor ^ np.uint8(0x80)).view(np.int8)
        top = clf.top(clf.probabilities(clf.runtime.run(tensor[np.newaxis])))  # infer
        label = top[0] if top else None
        text = f"{label.name} {label.score:.2f}" if label else "-"
        cv2.putText(image, text, (24, 48), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 255, 0), 2)  # draw
        frames += 1
    cap.release()
    return frames, time.perf_counter() - started


def pipeline(video: Path, clf: Classifier) -> tuple[int, float]:
    """edge-classify --source VIDEO --every-frame --no-display --json /dev/null, in-process."""
    sinks = build_sinks(display=False, json_path=os.devnull, record=None, web=None,
                        web_token_file=None)
    started = time.perf_counter()
    snapshot = Pipeline(str(video), clf, sinks, keep_all=True).run()
    return int(snapshot["frames_out"]), time.perf_counter() - started


def bare(clf: Classifier, iterations: int) -> float:
    """Inferences per second of the runtime alone on a ready tensor."""
    tensor = clf.preprocess(np.zeros((720, 1280, 3), np.uint8))
    for _ in range(10):
        clf.runtime.run(tensor)
    started = time.perf_counter()
    for _ in range(iterations):
        clf.runtime.run(tensor)
    return iterations / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each loop per video")
    parser.add_argument("--frames", type=int, default=600, help="frames per video (>= 600)")
    parser.add_argument("--threads", type=int, default=1, help="runtime threads (both loops)")
    parser.add_argument("--model", default="squeezenet1.1")
    parser.add_argument("--videos", type=Path, default=None,
                        help="folder for the generated videos (default: $EDGE_SDK_HOME/bench)")
    parser.add_argument("--codecs", default="mjpeg,h264")
    args = parser.parse_args()

    videos = bench_videos(args.videos or store.home_dir() / "bench", args.frames)
    load: dict[str, Any] = {"model": args.model, "runtime": "litert", "num_threads": args.threads}
    ours = Classifier.from_model(**load)
    theirs = Classifier.from_model(**load)
    rows = []
    for codec in args.codecs.split(","):
        video = videos[codec]
        seq_fps: list[float] = []
        pipe_fps: list[float] = []
        bare_fps: list[float] = []
        for run in range(args.runs):
            order = [("seq", sequential, theirs), ("pipe", pipeline, ours)]
            if run % 2:
                order.reverse()
            for kind, fn, clf in order:
                frames, seconds = fn(video, clf)
                fps = frames / seconds
                (seq_fps if kind == "seq" else pipe_fps).append(fps)
                print(f"{codec} run {run + 1}: {kind:4s} {frames} frames in {seconds:6.2f} s = "
                      f"{fps:6.1f} fps", file=sys.stderr)
            bare_fps.append(bare(theirs, 200))
        rows.append((codec, statistics.median(seq_fps), statistics.median(pipe_fps),
                     statistics.median(bare_fps),
                     statistics.median(p / s for p, s in zip(pipe_fps, seq_fps, strict=True))))
    ours.close()
    theirs.close()

    print(f"\nmachine: {platform.machine()} {os.cpu_count()} cores, {platform.python_version()}, "
          f"OpenCV {cv2.__version__}; model {args.model} int8 on litert, {args.threads} thread(s); "
          f"{args.frames} frames 1280x720, {args.runs} runs each, alternated; load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'video':<8}{'sequential fps':>16}{'edge-classify fps':>19}{'ratio':>8}"
          f"{'paired ratio':>14}{'bare fps':>10}{'edge/bare':>11}")
    ok = True
    for codec, seq, pipe, bare_rate, paired in rows:
        print(f"{codec:<8}{seq:>16.1f}{pipe:>19.1f}{pipe / seq:>8.2f}{paired:>14.2f}"
              f"{bare_rate:>10.1f}{pipe / bare_rate:>11.2f}")
        if codec == "mjpeg" and pipe / seq < 1.25:
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
