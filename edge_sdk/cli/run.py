"""The live run: ``edge-classify --camera [N]`` or ``edge-classify --source URI``.

The options live on the root command (see edge_sdk.cli.main), so the main job needs no
subcommand. This module builds the Classifier, the sinks and the Pipeline from them, turns
SIGINT/SIGTERM into a clean stop (the library itself never touches signals), prints a stats
line every few seconds with ``--stats``, and ends every run with a summary table on stderr
(stdout stays clean for ``--json``).
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import click

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from edge_sdk.errors import ConfigError, SinkError
from edge_sdk.models.store import PRECISIONS
from edge_sdk.runtimes import MAX_THREADS

log = logging.getLogger("edge_sdk.cli")

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_WEB_BIND = "127.0.0.1:8080"

#: Seconds between two ``--stats`` lines.
STATS_INTERVAL_S = 5.0

#: Option names of the live run, in the order they appear in --help.
LIVE_OPTIONS = (
    "camera", "source", "source_option", "model", "runtime", "threads", "precision", "top_k", "threshold",
    "smooth", "display", "json_path", "record", "web", "web_token_file", "max_frames", "max_fps",
    "every_frame", "realtime", "stats", "verbose", "mirror",
)  # fmt: skip


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange without NaN and infinity, which pass its comparisons."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{number} is not a finite number", param, ctx)
        return number


class SourceOption(click.ParamType):  # type: ignore[type-arg]  # generic only in click >= 8.2
    """``KEY=VALUE``, a source option: VALUE is read as a TOML value where it is one (``30``,
    ``2.5``, ``false``, ``"x"``) and as a plain string otherwise (``1280x720``, ``udp``)."""

    name = "KEY=VALUE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        key, sep, text = str(value).partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            self.fail(f"{value!r} is not KEY=VALUE (e.g. size=1280x720, fps=30, transport=udp)",
                      param, ctx)
        try:
            parsed = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = text.strip()
        if isinstance(parsed, (dict, list)) or not isinstance(parsed, (str, int, float, bool)):
            parsed = text.strip()  # a source option is one plain value; dates stay text too
        return key, parsed


SOURCE_OPTION_HELP = ("Option for the source, repeatable: size=1280x720, fps=30, fourcc=YUYV "
                      "(USB camera), transport=udp, timeout=10 (RTSP), verify=false (HTTPS). "
                      "See docs/sources.md.")


def live_options(f: F) -> F:
    """Add the live-run options to a click command."""
    options = [
        click.option("--camera", metavar="[N]", is_flag=False, flag_value="0", default=None,
                     help="Classify camera N (default 0: /dev/video0)."),
        click.option("--source", metavar="URI", default=None,
                     help="Classify a video file, image, folder, http(s)://, rtsp://, gst://, "
                          "csi://N or test:// source."),
        click.option("--source-option", "source_option", type=SourceOption(), multiple=True,
                     help=SOURCE_OPTION_HELP),
        click.option("--model", default="squeezenet1.1", show_default=True,
                     help="Zoo name or model file."),
        click.option("--runtime", default="litert", show_default=True,
                     help="litert, onnxruntime or opencv."),
        click.option("--threads", type=click.IntRange(min=1, max=MAX_THREADS), default=None,
                     help="Runtime threads (default: the runtime's choice)."),
        click.option("--precision", type=click.Choice(PRECISIONS), default="int8",
                     show_default=True),
        click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True,
                     help="Classes per prediction."),
        click.option("--threshold", type=FiniteFloatRange(0.0, 1.0), default=0.0,
                     show_default=True, help="Leave out classes scoring below this."),
        click.option("--smooth", type=click.IntRange(min=0), default=0, metavar="N",
                     help="Average the probabilities of the last N frames (stops flicker)."),
        click.option("--display/--no-display", default=True, show_default=True,
                     help="Show the overlay window (off by itself when there is no display)."),
        click.option("--json", "json_path", metavar="[FILE]", is_flag=False, flag_value="-",
                     default=None, help="Write one JSON object per prediction (stdout if no FILE)."),
        click.option("--record", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     metavar="FILE", help="Write the annotated video to FILE (.avi or .mp4)."),
        click.option("--web", metavar="[ADDR:PORT]", is_flag=False, flag_value=DEFAULT_WEB_BIND,
                     default=None,
                     help=f"Serve the live view and /metrics (default {DEFAULT_WEB_BIND})."),
        click.option("--web-token-file", type=click.Path(dir_okay=False, readable=False, path_type=Path),
                     default=None, metavar="FILE",
                     help="Token the web view requires (needed off loopback)."),
        click.option("--max-frames", type=click.IntRange(min=1), default=None,
                     help="Stop after this many predictions."),
        click.option("--max-fps", type=FiniteFloatRange(min=0.001, max=1000.0), default=None,
                     help="Classify at most this many frames per second."),
        click.option("--every-frame", is_flag=True,
                     help="Classify every frame of a file, dropping none (offline runs)."),
        click.option("--realtime", is_flag=True,
                     help="Play a file at its frame rate, like a camera (the default for "
                          "video files unless --every-frame)."),
        click.option("--stats", is_flag=True, help=f"Print a stats line every {STATS_INTERVAL_S:g} s."),
        click.option("-v", "--verbose", count=True, help="More log output (-vv: debug)."),
        click.option("--mirror", type=click.Path(file_okay=False, readable=False, path_type=Path),
                     envvar="EDGE_SDK_MODEL_MIRROR",
                     help="Folder holding the source model files [env: EDGE_SDK_MODEL_MIRROR]."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def camera_uri(camera: str) -> str:
    """Turn ``--camera`` 's value (N or a device path) into a source URI."""
    camera = camera.strip()
    if camera.isdigit():
        return camera
    if camera.startswith("/dev/"):
        return f"v4l2://{camera}"
    return camera


def setup_logging(verbose: int) -> None:
    """Log to stderr, one line per message; warnings by default, info with -v, debug with -vv."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_edge_cli", False)]:
        root.removeHandler(old)  # bound to the sys.stderr of an earlier run (tests swap it)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("edge-classify: %(levelname)s: %(message)s"))
    handler._edge_cli = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


@contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """Call `stop` on the first SIGINT/SIGTERM; a second SIGINT aborts at once (exit 130).

    Only the main thread can install handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        received.append(signum)
        log.info("got %s, stopping", signal.Signals(signum).name)
        stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def build_sinks(
    *, display: bool, json_path: str | None, record: Path | None, web: str | None,
    web_token_file: Path | None,
) -> list[Any]:
    """Create the sinks the options ask for, through the registry (optional ones import lazily).

    Raises:
        BackendUnavailable: the web view's optional package is missing (message names the pip).
        SinkError, ConfigError: a sink cannot be set up.
    """
    from edge_sdk import registry

    sinks: list[Any] = []
    if display:
        sinks.append(registry.create("sinks", "overlay"))
    if json_path is not None:
        sinks.append(registry.create("sinks", "jsonl", path=json_path))
    if record is not None:
        sinks.append(registry.create("sinks", "video", path=record))
    if web is not None:
        options: dict[str, Any] = {"bind": web}
        if web_token_file is not None:
            options["token_file"] = web_token_file
        view = registry.create("sinks", "web", **options)
        sinks.append(view)
        # The sink logs its address at INFO, which needs -v; with port 0 it is the only way
        # to learn the port, so say it anyway.
        if not logging.getLogger("edge_sdk.web.sink").isEnabledFor(logging.INFO):
            hint = " (add ?token=TOKEN)" if web_token_file is not None else ""
            click.echo(f"web view at {view.url}{hint}", err=True)
    return sinks


def stats_line(snapshot: dict[str, Any]) -> str:
    """One line of live statistics, for ``--stats``."""
    stages = snapshot["stages"]
    sink_drops = sum(s["dropped"] for s in snapshot["sinks"].values())
    decode = stages.get("decode", {"count": 0})
    # Only JPEG sources decode on the inference thread; for others the figure would be noise.
    decoded = f"decode {decode['p50_ms']:.1f} ms  " if decode["count"] else ""
    return (
        f"{snapshot['uptime_s']:7.1f} s  in {snapshot['fps_in']:5.1f} fps  "
        f"out {snapshot['fps_out']:5.1f} fps  {decoded}"
        f"inference {stages['inference']['p50_ms']:.1f} ms  "
        f"age p50/p95 {stages['age']['p50_ms']:.0f}/{stages['age']['p95_ms']:.0f} ms  "
        f"dropped {snapshot['frames_dropped']} slot, {sink_drops} sinks"
    )


def summary_table(snapshot: dict[str, Any]) -> str:
    """The table every run ends with: per-stage latency, rates, drops, errors."""
    uptime = max(snapshot["uptime_s"], 1e-9)
    rows = [f"{'stage':<14}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}{'count':>8}"]
    for name in ("capture_wait", "decode", "preprocess", "inference", "postprocess", "sink", "age"):
        st = snapshot["stages"].get(name)
        if st is None:
            continue
        rows.append(
            f"{name:<14}{st['p50_ms']:>10.2f}{st['p95_ms']:>10.2f}{st['max_ms']:>10.2f}"
            f"{st['count']:>8}"
        )
    rows.append(
        f"frames in {snapshot['frames_in']} ({snapshot['frames_in'] / uptime:.1f}/s), "
        f"out {snapshot['frames_out']} ({snapshot['frames_out'] / uptime:.1f}/s) in "
        f"{snapshot['uptime_s']:.1f} s; dropped before inference {snapshot['frames_dropped']}; "
        f"errors {snapshot['errors']}; reconnects {snapshot['reconnects']}"
    )
    for name, s in snapshot["sinks"].items():
        rows.append(
            f"sink {name}: published {s['published']}, dropped {s['dropped']}, "
            f"errors {s['errors']}, p50 {s['p50_ms']:.2f} ms"
        )
    return "\n".join(rows)


def run_live(
    *, camera: str | None, source: str | None, source_option: tuple[tuple[str, Any], ...],
    model: str, runtime: str, threads: int | None,
    precision: str, top_k: int, threshold: float, smooth: int, display: bool,
    json_path: str | None, record: Path | None, web: str | None, web_token_file: Path | None,
    max_frames: int | None, max_fps: float | None, every_frame: bool, realtime: bool,
    stats: bool, verbose: int, mirror: Path | None,
) -> None:
    """Run the pipeline the options describe until the source ends or a signal stops it.

    Raises:
        EdgeSDKError: set-up failed or the source failed for good (shown as one line).
        click.UsageError: both or neither of --camera and --source.
    """
    if (camera is None) == (source is None):
        raise click.UsageError("give --camera [N] or --source URI (one of them)")
    if web_token_file is not None and web is None:
        raise click.UsageError("--web-token-file goes with --web [ADDR:PORT]; add --web")
    setup_logging(verbose)
    uri = camera_uri(camera) if camera is not None else str(source)
    if not uri:
        raise ConfigError("--source needs a URI: a file, a folder, http://..., rtsp://..., test://")
    options = dict(source_option)  # a key given twice keeps its last value
    if options:
        from edge_sdk.sources import check_options

        try:
            check_options(uri, options)
        except ConfigError as exc:
            raise ConfigError(f"--source-option: {exc}") from None

    from edge_sdk.classifier import Classifier
    from edge_sdk.pipeline import Pipeline
    from edge_sdk.sources.opening import OpenInterrupted

    sinks = build_sinks(display=display, json_path=json_path, record=record, web=web,
                        web_token_file=web_token_file)
    try:
        clf = Classifier.from_model(model, runtime=runtime, precision=precision,
                                    num_threads=threads, top_k=top_k, threshold=threshold,
                                    mirror=mirror)
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    with clf:
        pipeline = Pipeline(
            uri, clf, sinks, source_options=options, max_fps=max_fps, max_frames=max_frames,
            keep_all=True if every_frame else None, realtime=True if realtime else None,
            smoothing=smooth or None,
        )
        with stop_on_signals(pipeline.request_stop):
            try:
                pipeline.start()  # on failure it closes the sinks itself
            except OpenInterrupted:  # Ctrl-C while a stream was still connecting
                if pipeline.stop_requested:
                    return
                raise
            except ValueError as exc:
                if not options:
                    raise
                # A value check_options could not judge, refused by the source as it opened.
                raise ConfigError(f"--source-option: {exc}") from exc
            try:
                _watch(pipeline, stats)
            finally:
                pipeline.stop()
        click.echo(summary_table(pipeline.metrics.snapshot()), err=True)
    if pipeline.error is not None:
        raise pipeline.error
    failed = pipeline.failure_summary()
    if failed is not None:  # e.g. --json on a full disk: the run is not a success
        raise SinkError(failed)


def _watch(pipeline: Any, stats: bool) -> None:
    """Wait for the run to end, printing a stats line every few seconds if asked."""
    next_stats = time.monotonic() + STATS_INTERVAL_S
    # Short waits keep the main thread responsive to signal handlers.
    while not pipeline.wait(0.2):
        if pipeline.stop_requested:
            break
        if stats and time.monotonic() >= next_stats:
            next_stats += STATS_INTERVAL_S
            click.echo(stats_line(pipeline.metrics.snapshot()), err=True)
