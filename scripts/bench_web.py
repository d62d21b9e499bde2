#!/usr/bin/env python3
"""What watching the web view costs inference: FPS with 3 MJPEG viewers against none.

One pipeline run: a 1280x720 MJPEG video (real photos, made with ffmpeg) through the real
pipeline and int8 SqueezeNet on LiteRT, every frame (``keep_all``: the CPU is the limit, as
with a fast camera), with the web sink at its defaults. During the run, three MJPEG viewers
(in a separate process, as browsers on other machines would be) connect and disconnect in
turns, so the two conditions alternate within the same run, in ABBA order to cancel drift:

- ``idle``:      the web sink with nobody connected;
- ``3 viewers``: three clients reading /stream.mjpg as fast as it comes.

Each segment's FPS is the predictions published during it divided by its length. The table
gives, over the segment pairs, the median FPS of each condition and the median of the per-pair
ratios; the goal is ``3 viewers`` / ``idle`` >= 0.90. On a machine shared with other work the
FPS swing with the load; the process's CPU time per prediction in each segment (all threads)
is printed too: its idle/watched ratio is the FPS ratio a CPU-bound board would see, and it
hardly depends on what else runs. Also printed: a separate run with no web
sink at all, for reference (it decodes JPEG at reduced size: no sink wants full frames).

    .venv/bin/python scripts/bench_web.py --pairs 6 --segment 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

VIEWERS = 3


def _viewers_main(host: str, port: int) -> None:
    """Child process: on "on" open VIEWERS MJPEG readers, on "off" close them, "quit" ends.

    Prints, for each "off", the JPEG parts each reader got.
    """
    socks: list[socket.socket] = []
    threads: list[threading.Thread] = []
    counts: list[int] = []

    def read(sock: socket.socket, i: int) -> None:
        while True:
            try:
                chunk = sock.recv(1 << 16)
            except OSError:
                return
            if not chunk:
                return
            counts[i] += chunk.count(b"Content-Type: image/jpeg")

    for line in sys.stdin:
        command = line.strip()
        if command == "on":
            counts[:] = [0] * VIEWERS
            for i in range(VIEWERS):
                sock = socket.create_connection((host, port), timeout=30)
                sock.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
                socks.append(sock)
                threads.append(threading.Thread(target=read, args=(sock, i), daemon=True))
                threads[-1].start()
        elif command == "off":
            for sock in socks:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            for t in threads:
                t.join(5)
            socks.clear()
            threads.clear()
            print(json.dumps(counts), flush=True)
        elif command == "quit":
            return


def _wait(condition: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _fps(stamps: list[float], t0: float, t1: float) -> float:
    return sum(1 for t in stamps if t0 <= t < t1) / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=6, help="idle/viewers segment pairs (>= 5)")
    parser.add_argument("--segment", type=float, default=2.0, help="seconds per segment")
    parser.add_argument("--threads", type=int, default=2, help="LiteRT threads")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--_viewers", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._viewers:
        host, _, port = args._viewers.rpartition(":")
        _viewers_main(host, int(port))
        return
    if args.pairs < 1 or args.segment <= 0:
        parser.error("need --pairs >= 1 and --segment > 0")

    from support.media import make_video

    from edge_sdk.classifier import Classifier
    from edge_sdk.pipeline import Pipeline
    from edge_sdk.sources import open_source
    from edge_sdk.web.sink import WebSink

    width, height = (int(v) for v in args.size.split("x"))
    settle = 0.3
    with tempfile.TemporaryDirectory() as tmp, Classifier.from_model(
        "squeezenet1.1", runtime="litert", num_threads=args.threads
    ) as clf:
        video = make_video(Path(tmp) / "bench.avi", size=(width, height), frames=300)

        # Reference: no web sink at all (reduced JPEG decode), a few seconds.
        stamps_ref: list[float] = []
        Pipeline(str(video), clf, [], keep_all=True, max_frames=300,
                 on_prediction=lambda p: stamps_ref.append(time.perf_counter())).run()
        no_web = (len(stamps_ref) - 1) / (stamps_ref[-1] - stamps_ref[0])

        stamps: list[float] = []
        web = WebSink(bind="127.0.0.1:0")
        child = subprocess.Popen(
            [sys.executable, __file__, "--_viewers", f"{web.address.host}:{web.address.port}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        assert child.stdin is not None and child.stdout is not None
        # The video plays in a loop: the run lasts as long as the segments need.
        pipeline = Pipeline(open_source(str(video), loop=True), clf, [web], keep_all=True,
                            iterate=False,
                            on_prediction=lambda p: stamps.append(time.perf_counter()))
        idle: list[float] = []
        watched: list[float] = []
        per_viewer: list[int] = []
        jpegs_per_s: list[float] = []
        cpu_idle: list[float] = []
        cpu_watched: list[float] = []
        with pipeline:
            _wait(lambda: len(stamps) > 30, "the first predictions")
            for pair in range(args.pairs):
                order = ("idle", "on", "on", "idle")[2 * (pair % 2): 2 * (pair % 2) + 2]
                for condition in order:
                    if condition == "on":
                        child.stdin.write("on\n")
                        _wait(lambda: web.viewers == VIEWERS, "the viewers")
                    encoded0 = web._jpeg_frames
                    time.sleep(settle)
                    t0, cpu0, n0 = time.perf_counter(), time.process_time(), len(stamps)
                    time.sleep(args.segment)
                    t1, cpu1, n1 = time.perf_counter(), time.process_time(), len(stamps)
                    cpu_per = 1e3 * (cpu1 - cpu0) / max(1, n1 - n0)
                    if not pipeline.running:
                        raise RuntimeError(f"the pipeline stopped: {pipeline.error}")
                    if condition == "on":
                        jpegs_per_s.append((web._jpeg_frames - encoded0) / (t1 - t0 + settle))
                        child.stdin.write("off\n")
                        per_viewer.append(min(json.loads(child.stdout.readline())))
                        _wait(lambda: web.viewers == 0, "the viewers to leave")
                        watched.append(_fps(stamps, t0, t1))
                        cpu_watched.append(cpu_per)
                    else:
                        idle.append(_fps(stamps, t0, t1))
                        cpu_idle.append(cpu_per)
                print(f"pair {pair + 1}/{args.pairs}: idle {idle[-1]:.1f} FPS, "
                      f"3 viewers {watched[-1]:.1f} FPS", file=sys.stderr)
            pipeline.request_stop()
        child.stdin.write("quit\n")
        child.stdin.close()
        child.wait(10)
        encode_ms = 1e3 * web._jpeg_seconds / max(1, web._jpeg_frames)

    ratios = [w / i for w, i in zip(watched, idle, strict=True)]
    ratio = statistics.median(ratios)
    print(f"\nmachine: {platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    print(f"one run: {width}x{height} MJPEG video, every frame, LiteRT int8 squeezenet1.1, "
          f"{args.threads} threads; web sink defaults (max_width {web.max_width}, "
          f"stream_fps {web.stream_fps:g}, quality {web.quality}); {args.pairs} pairs of "
          f"{args.segment:g} s segments, ABBA order\n")
    print("| condition               | median FPS | min-max FPS   | ratio vs idle (median, min-max) |")
    print("|-------------------------|-----------:|--------------:|--------------------------------:|")
    print(f"| idle (nobody watching)  | {statistics.median(idle):10.1f} | "
          f"{min(idle):5.1f} - {max(idle):5.1f} | {1.0:31.3f} |")
    print(f"| 3 MJPEG viewers         | {statistics.median(watched):10.1f} | "
          f"{min(watched):5.1f} - {max(watched):5.1f} | "
          f"{ratio:.3f} ({min(ratios):.3f} - {max(ratios):.3f}){'':>11} |")
    cpu_ratios = [i / w for w, i in zip(cpu_watched, cpu_idle, strict=True)]
    print(f"\nCPU time of the whole process per prediction (all its threads; the viewers' "
          f"process not counted): idle {statistics.median(cpu_idle):.2f} ms, 3 viewers "
          f"{statistics.median(cpu_watched):.2f} ms; median per-pair idle/watched "
          f"{statistics.median(cpu_ratios):.3f}: the FPS ratio a CPU-bound board would see")
    print(f"while watched: {statistics.median(jpegs_per_s):.1f} JPEGs encoded per second "
          f"(once for all viewers), {encode_ms:.2f} ms each (scale + annotate + encode), "
          f"median {statistics.median(per_viewer)} frames received per viewer per segment")
    print(f"reference, separate run without a web sink (reduced JPEG decode): {no_web:.1f} FPS")
    print(f"\n3 viewers / idle: {ratio:.3f} (goal >= 0.90): {'PASS' if ratio >= 0.9 else 'FAIL'}")


if __name__ == "__main__":
    main()
