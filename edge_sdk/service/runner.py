"""The service: a Pipeline built from the config, run until SIGTERM, reporting to systemd.

`edge-classify run --config FILE` calls `run_service`. Under systemd (Type=notify) it sends
READY=1 with the first prediction, WATCHDOG=1 while predictions flow, STATUS= with the rate, and
STOPPING=1 when told to stop; outside systemd those are no-ops. Exit status: 0 after SIGTERM /
SIGINT or the end of a finite source, 1 when the run failed (so Restart=on-failure restarts it).
A signal also cuts short a connect to a camera that never answers, and what it cuts short is
not a failure: the exit status is 0 within the 2 s systemd is promised.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from edge_sdk import registry
from edge_sdk.config import PLUGIN_SINKS, Config, JsonlConfig, MqttConfig, WebConfig, check_watchdog
from edge_sdk.errors import ConfigError, EdgeSDKError, SinkError, SourceError
from edge_sdk.service.notify import SystemdNotifier, watchdog_seconds
from edge_sdk.service.watchdog import WatchdogSink
from edge_sdk.sinks.worker import sink_name
from edge_sdk.sources.opening import stoppable_opens

log = logging.getLogger("edge_sdk.service")

#: Seconds the sinks get at shutdown; SIGTERM must end the process within 2 s.
DRAIN_TIMEOUT = 1.0
MQTT_CLOSE_TIMEOUT = 0.6

# journald reads a "<N>" syslog priority at the start of each stderr line.
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    """One line per record; with a syslog priority prefix when stderr goes to the journal."""

    def __init__(self, journal: bool) -> None:
        super().__init__("%(name)s: %(message)s" if journal else
                         "%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\n", " | ")
        if self.journal:
            return f"<{_PRIORITY.get(record.levelno, 6)}>{text}"
        return text


def setup_logging(level: str) -> None:
    """Log to stderr (the journal under systemd), one line per record."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JournalFormatter(journal=bool(os.environ.get("JOURNAL_STREAM"))))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # paho and PIL chatter at DEBUG is not ours to show.
    logging.getLogger("PIL").setLevel(logging.WARNING)


def _none_if_empty(value: Any) -> Any:
    return None if value in ("", 0) else value


def mqtt_options(cfg: MqttConfig) -> dict[str, Any]:
    """The MqttSink keyword options for an [mqtt] table."""
    options = {k: v for k, v in vars(cfg).items() if k != "enabled"}
    for key in ("port", "device_id", "ca_file", "certfile", "keyfile", "username", "password_file",
                "spool"):
        options[key] = _none_if_empty(options[key])
    options["close_timeout"] = MQTT_CLOSE_TIMEOUT
    return options


def web_options(cfg: WebConfig) -> dict[str, Any]:
    """The WebSink keyword options for a [web] table."""
    options = {k: v for k, v in vars(cfg).items() if k != "enabled"}
    options["token_file"] = _none_if_empty(options["token_file"])
    return options


def jsonl_options(cfg: JsonlConfig) -> dict[str, Any]:
    return {"path": cfg.path, "append": True}


@contextlib.contextmanager
def config_errors(config: Config, table: str) -> Iterator[None]:
    """Turn a ValueError raised while building `table`'s part of the service into a ConfigError.

    The config's checks refuse what the sinks and the pipeline refuse, so this should never
    fire; it is the safety net for a rule they miss. Under systemd a traceback on every
    restart is the failure to avoid; one line naming the file and table is the one to have.
    """
    try:
        yield
    except ValueError as exc:
        where = config.path or "the built-in config"
        fix = f"edge-classify check-config {where}" if config.path else "a config file"
        raise ConfigError(f"{where}: {table} {exc}; fix {table} (then run {fix})") from exc


@contextlib.contextmanager
def _start_failures(config: Config, name: str, table: str) -> Iterator[None]:
    """Turn what a sink raises at start, beyond edge-sdk's own errors, into one SinkError line.

    A plugin's own failure (a TypeError on an option's type, an OSError, ...) must not become
    a traceback on every restart under systemd.
    """
    try:
        yield
    except EdgeSDKError:
        raise
    except Exception as exc:
        raise SinkError(
            f"the sink {name!r} failed to start ({type(exc).__name__}: {exc}); "
            f"check {table} in {config.path or 'the config'}"
        ) from exc


def build_sinks(config: Config) -> list[Any]:
    """Create the sinks the config switches on, in a fixed order (closing them all on failure).

    The built-in tables' sinks come first, then the ``[sinks.NAME]`` ones in file order.

    Raises:
        ConfigError: a sink refused its options (see `config_errors`).
        EdgeSDKError: a sink cannot be set up (address in use, unreadable file, ...).
    """
    # (sink name, the table that configures it, options)
    wanted: list[tuple[str, str, dict[str, Any]]] = []
    if config.mqtt.enabled:
        wanted.append(("mqtt", "[mqtt]", mqtt_options(config.mqtt)))
    if config.web.enabled:
        wanted.append(("web", "[web]", web_options(config.web)))
    if config.overlay.enabled:
        wanted.append(("overlay", "[overlay]", {}))
    if config.jsonl.enabled:
        wanted.append(("jsonl", "[jsonl]", jsonl_options(config.jsonl)))
    wanted += [(n, f"[{PLUGIN_SINKS}.{n}]", dict(o)) for n, o in config.sinks.items()]
    sinks: list[Any] = []
    try:
        for name, table, options in wanted:
            with _start_failures(config, name, table), config_errors(config, table):
                sinks.append(registry.create("sinks", name, **options))
    except BaseException:
        close_all(sinks)
        raise
    return sinks


def close_all(sinks: list[Any]) -> None:
    for sink in reversed(sinks):
        try:
            sink.close()
        except Exception:
            log.exception("closing %s failed", type(sink).__name__)


def pipeline_options(config: Config) -> dict[str, Any]:
    p = config.pipeline
    return {
        "max_fps": _none_if_empty(p.max_fps),
        "max_frames": _none_if_empty(p.max_frames),
        "smoothing": _none_if_empty(p.smoothing),
        "keep_all": p.keep_all,
        "realtime": p.realtime,
        "drain_timeout": DRAIN_TIMEOUT,
        "source_options": dict(config.source.options),
    }


def run_service(config: Config, *, notifier: SystemdNotifier | None = None) -> int:
    """Run the pipeline the config describes until it ends or a signal stops it.

    Returns:
        The process exit status: 0 on a requested stop or a finished source, 1 on failure.

    Raises:
        EdgeSDKError: the model, source or a sink cannot be set up (the CLI prints it as one
            line and exits 1; systemd restarts the unit). A value refused while building the
            pipeline is a ConfigError naming its table, never a bare ValueError.
    """
    from edge_sdk.classifier import Classifier
    from edge_sdk.pipeline import Pipeline

    watchdog = watchdog_seconds()
    # Before the model loads: a stall_after the watchdog cannot honour fails at once.
    check_watchdog(config, watchdog, "the unit's WatchdogSec")
    m = config.model
    log.info("starting: source %s, model %s on %s (%s)", config.source.uri, m.name, m.runtime,
             m.precision)
    with config_errors(config, "[model]"):
        classifier = Classifier.from_model(
            m.name, runtime=m.runtime, precision=m.precision,
            num_threads=_none_if_empty(m.threads), top_k=m.top_k, threshold=m.threshold,
            mirror=_none_if_empty(m.mirror), home=_none_if_empty(m.home),
        )
    notifier = notifier or SystemdNotifier()
    try:
        sinks = build_sinks(config)
        made = list(sinks)
        try:
            with config_errors(config, "[service]"):
                heartbeat = WatchdogSink(
                    notifier, watchdog=watchdog,
                    stall_after=_none_if_empty(config.service.stall_after),
                    status_every=config.service.status_every,
                )
            made.append(heartbeat)
            with config_errors(config, "[pipeline]"):
                pipeline = Pipeline(config.source.uri, classifier, made,
                                    **pipeline_options(config))
        except BaseException:
            close_all(made)
            raise
        if watchdog:
            log.info("systemd watchdog: %.0f s; pings stop after %.1f s without a prediction",
                     watchdog, heartbeat.stall_after)
        # A source option the config check could not judge, refused when the source opens.
        with config_errors(config, "[source] options"):
            return _run(pipeline, notifier, made)
    finally:
        classifier.close()
        notifier.close()


def _run(pipeline: Any, notifier: SystemdNotifier, sinks: list[Any]) -> int:
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stopping.is_set():
            stopping.set()
            notifier.stopping(status=f"stopping on {signal.Signals(signum).name}")
            log.info("%s: stopping", signal.Signals(signum).name)
        pipeline.request_stop()

    def on_hangup(signum: int, frame: FrameType | None) -> None:
        # What logrotate's postrotate sends: files are reopened, the run goes on. (By default
        # SIGHUP would kill the service without a word, and systemd counts that as a clean
        # exit, so Restart=on-failure would not bring it back.)
        reopening = [sink for sink in sinks if callable(getattr(sink, "reopen", None))]
        log.info("SIGHUP: reopening %s", ", ".join(sink_name(s) for s in reopening) or "nothing")
        for sink in reopening:
            sink.reopen()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hangup)
    try:
        # The first open runs on this thread: a camera that accepts the connection and never
        # answers must not hold the stop up (see edge_sdk.sources.opening).
        with stoppable_opens(stopping):
            pipeline.run()
    except ConfigError:
        raise  # exit 78: restarting cannot mend a config (a source option opening refused)
    except EdgeSDKError as exc:
        if not stopping.is_set():
            notifier.stopping(status=f"failed: {exc}")
            log.error("stopped: %s", exc)
            return 1
        # What the stop cut short (a connect, a read that then stalled) is no failure.
        log.log(logging.INFO if isinstance(exc, SourceError) else logging.WARNING, "%s", exc)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    failed = pipeline.failure_summary()
    if failed is not None:  # e.g. the only output on a full disk: say so at the end too
        log.error("%s", failed)
    if not stopping.is_set():
        notifier.stopping(status="source ended" if failed is None else f"failed: {failed}")
    log.info("stopped after %d predictions", pipeline.published)
    # A source that ended while a sink kept failing is no success; a requested stop is.
    return 1 if failed is not None and not stopping.is_set() else 0
