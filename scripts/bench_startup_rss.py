#!/usr/bin/env python3
"""Start-up time and peak memory of ``edge-classify --source VIDEO --no-display --json``.

Each run starts the real command (a new process: imports, model load, source open), times how
long until the first JSON line appears on its stdout, lets it classify --frames predictions of a
1280x720 MJPEG video of real photos at the video's own rate, and reads the process's peak RSS
from the kernel (its VmHWM, sampled every 20 ms while it runs). The model must already be built
(`edge-classify models build squeezenet1.1`, or run the tests once).

Goals (issue 3): peak RSS <= 150 MB, start to first prediction <= 2 s.

Usage: .venv/bin/python scripts/bench_startup_rss.py [--runs 5] [--frames 90]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("EDGE_SDK_MODEL_MIRROR", str(REPO.parent / "shared" / "models"))

from support.media import make_video  # noqa: E402

from edge_sdk.models import store  # noqa: E402

EXE = Path(sys.executable).with_name("edge-classify")


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM of a running process, in MB; None once it is gone.

    Read from /proc rather than wait4's ru_maxrss: Linux carries a forked child's pre-exec peak
    (a copy of this benchmark process) into ru_maxrss, which would overstate the command's own.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def one_run(cmd: list[str]) -> tuple[float, float, int]:
    """Return (seconds to the first prediction, peak RSS in MB, predictions) of one run."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    peak = [0.0]

    def watch() -> None:
        while proc.poll() is None:
            value = peak_rss_mb(proc.pid)
            if value is not None:
                peak[0] = max(peak[0], value)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert proc.stdout is not None
    first = proc.stdout.readline()
    first_s = time.perf_counter() - started
    lines = 1 if first else 0
    for _ in proc.stdout:
        lines += 1
    proc.wait()
    watcher.join()
    if proc.returncode != 0 or not first:
        raise RuntimeError(f"{' '.join(cmd)} failed with status {proc.returncode}")
    return first_s, peak[0], lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--frames", type=int, default=90, help="predictions per run")
    parser.add_argument("--model", default="squeezenet1.1")
    args = parser.parse_args()

    folder = store.home_dir() / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    video = folder / "photos-720p-300.avi"
    if not video.exists():
        make_video(video, codec="mjpeg", size=(1280, 720), frames=300, fps=30)
    cmd = [str(EXE), "--source", str(video), "--no-display", "--json", "--model", args.model,
           "--max-frames", str(args.frames)]
    firsts, peaks = [], []
    for run in range(args.runs):
        first_s, peak_mb, lines = one_run(cmd)
        firsts.append(first_s)
        peaks.append(peak_mb)
        print(f"run {run + 1}: first prediction after {first_s:.2f} s, peak RSS {peak_mb:.1f} MB, "
              f"{lines} predictions", file=sys.stderr)

    print(f"\nmachine: {platform.machine()} {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}; {args.runs} runs")
    print(f"command: edge-classify --source {video.name} (1280x720 MJPEG) --no-display --json "
          f"--model {args.model} --max-frames {args.frames}")
    print(f"{'measure':<28}{'median':>10}{'max':>10}{'goal':>10}")
    print(f"{'start to first prediction':<28}{statistics.median(firsts):>9.2f}s{max(firsts):>9.2f}s"
          f"{'2.00s':>10}")
    print(f"{'peak RSS':<28}{statistics.median(peaks):>8.1f}MB{max(peaks):>8.1f}MB{'150MB':>10}")
    ok = statistics.median(firsts) <= 2.0 and max(peaks) <= 150
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
