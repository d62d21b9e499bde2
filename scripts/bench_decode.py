#!/usr/bin/env python3
"""Decoding cost per frame: full vs reduced JPEG decode, and what each source path costs.

Measures, on this machine, with real photos (../shared/data/imagenet-sample):
  1. cv2.imdecode of one 1280x720 JPEG at full size and at 1/2, 1/4, 1/8 (IMREAD_REDUCED_*);
  2. reading a whole 1280x720 MJPEG video: OpenCV/FFmpeg decoding every frame, vs JPEG packets
     (CAP_PROP_FORMAT=-1) decoded with imdecode at full and reduced size, vs packets not decoded
     at all (what a dropped frame costs the capture thread); and an H.264 video for comparison.
Each row is the median of --runs runs; ratios are against the full decode in the same run.

Usage: .venv/bin/python scripts/bench_decode.py [--frames 300] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.media import make_jpeg, make_video

from edge_sdk.sources import open_source
from edge_sdk.sources.base import decode_jpeg


def median_time(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="frames in the test videos")
    parser.add_argument("--runs", type=int, default=7, help="runs per row (median reported)")
    parser.add_argument("--repeat", type=int, default=50, help="decodes per run for one JPEG")
    args = parser.parse_args()
    cv2.setNumThreads(1)

    with tempfile.TemporaryDirectory() as tmp:
        jpeg_path = make_jpeg(Path(tmp) / "frame.jpg", (1280, 720), quality=90)
        data = jpeg_path.read_bytes()
        print(f"1280x720 JPEG, quality 90, {len(data) / 1024:.0f} KB; median of {args.runs} runs")
        print(f"{'decode':<24}{'ms/frame':>10}{'vs full':>10}")
        full = 0.0
        for reduce in (1, 2, 4, 8):
            def decode_all(r: int = reduce) -> object:
                return [decode_jpeg(data, r) for _ in range(args.repeat)]

            seconds = median_time(decode_all, args.runs)
            ms = seconds / args.repeat * 1000
            full = full or ms
            label = "full" if reduce == 1 else f"reduce={reduce} (1/{reduce})"
            print(f"{label:<24}{ms:>10.2f}{full / ms:>9.1f}x")

        mjpeg = make_video(Path(tmp) / "cam.avi", codec="mjpeg", frames=args.frames)
        h264 = make_video(Path(tmp) / "cam.mp4", codec="h264", frames=args.frames)

        def ffmpeg_decode(path: Path) -> Callable[[], int]:
            def run() -> int:
                cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
                n = 0
                while cap.read()[0]:
                    n += 1
                cap.release()
                return n

            return run

        def packets(reduce: int | None) -> Callable[[], int]:
            def run() -> int:
                source = open_source(str(mjpeg), reduce=reduce or 1)
                n = 0
                while (packet := source.read_packet()) is not None:  # type: ignore[attr-defined]
                    if reduce is not None:
                        source.decode(packet)  # type: ignore[attr-defined]
                    n += 1
                source.close()
                return n

            return run

        rows = [
            ("MJPEG, FFmpeg decodes all", ffmpeg_decode(mjpeg)),
            ("MJPEG packets, full", packets(1)),
            ("MJPEG packets, reduce=2", packets(2)),
            ("MJPEG packets, reduce=4", packets(4)),
            ("MJPEG packets, no decode", packets(None)),
            ("H.264, FFmpeg decodes all", ffmpeg_decode(h264)),
        ]
        print(f"\n1280x720 videos, {args.frames} frames; median of {args.runs} runs, 1 OpenCV thread")
        print(f"{'read path':<28}{'ms/frame':>10}{'frames/s':>10}{'vs FFmpeg MJPEG':>17}")
        base = 0.0
        for label, fn in rows:
            seconds = median_time(fn, args.runs)
            ms = seconds / args.frames * 1000
            base = base or ms
            print(f"{label:<28}{ms:>10.2f}{1000 / ms:>10.0f}{base / ms:>16.1f}x")


if __name__ == "__main__":
    main()
