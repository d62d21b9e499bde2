"""`edge-classify check-config FILE` and `edge-classify run [--config FILE]`: the service."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from edge_sdk import config as cfg
from edge_sdk.cli.errors import ConfigProblem
from edge_sdk.cli.run import SourceOption
from edge_sdk.config import Config
from edge_sdk.errors import ConfigError, EdgeSDKError

#: The unit `check-config` checks [service] stall_after against.
UNIT = "edge-classify.service"
#: WatchdogSec= of systemd/edge-classify.service, used when systemd has no such unit loaded.
UNIT_WATCHDOG_SEC = 30.0

# systemd's time span units (systemd.time(7)); `systemctl show` prints e.g. "1min 30s".
_SPAN_UNITS = {"us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0,
               "d": 86400.0, "w": 604800.0, "M": 2629800.0, "y": 31557600.0}
_SPAN_PART = re.compile(r"(\d+(?:\.\d+)?)(us|µs|μs|ms|s|min|h|d|w|M|y)")


def summary(config: Config) -> list[str]:
    """A few lines saying what the config will do."""
    m, lines = config.model, []
    given = " ".join(f"{k}={cfg.as_toml_value(v)}" for k, v in config.source.options.items())
    lines.append(f"source:  {config.source.uri}" + (f" ({given})" if given else ""))
    if config.source.options.get("watch") and not config.pipeline.keep_all:
        lines.append("note:    a burst of images in the watched folder is thinned to the newest; "
                     "set [pipeline] keep_all = true to classify each")
    threads = m.threads or "auto"
    lines.append(f"model:   {m.name} ({m.precision}) on {m.runtime}, {threads} threads, "
                 f"top {m.top_k}")
    if config.mqtt.enabled:
        q = config.mqtt
        port = q.port or (8883 if q.tls or q.ca_file or q.certfile else 1883)
        device = q.device_id or "<host name>"
        mode = "on change" if q.on_change else "every prediction"
        if q.interval:
            mode += f", every {q.interval:g} s"
        lines.append(f"mqtt:    {q.host}:{port} -> {q.prefix}/{device}/prediction (QoS {q.qos}, "
                     f"{mode}, discovery {'on' if q.discovery else 'off'})")
    if config.web.enabled:
        lines.append(f"web:     http://{config.web.bind}/")
    if config.overlay.enabled:
        lines.append("overlay: window on the local display")
    if config.jsonl.enabled:
        lines.append(f"jsonl:   {config.jsonl.path}")
    for name, options in config.sinks.items():
        lines.append(f"sink:    {name} ({', '.join(options) or 'no options'})")
    if not (config.mqtt.enabled or config.web.enabled or config.overlay.enabled
            or config.jsonl.enabled or config.sinks):
        lines.append("outputs: none switched on (enable [mqtt], [web], [overlay] or [jsonl], "
                     "or add a [sinks.NAME] table)")
    return lines


def parse_timespan(text: str) -> float | None:
    """Seconds in a systemd time span as `systemctl show` prints it ("30s", "1min 30s").

    Returns:
        The seconds (0 for "0"), float("inf") for "infinity", None if `text` is not a span.
    """
    text = text.strip()
    if text == "infinity":
        return float("inf")
    if text.isdigit():  # a bare number is the property's own unit, microseconds
        return int(text) / 1e6
    parts = text.split()
    matches = [_SPAN_PART.fullmatch(part) for part in parts]
    if not parts or not all(matches):
        return None
    return sum(float(m[1]) * _SPAN_UNITS[m[2]] for m in matches if m)


def unit_watchdog(run: Callable[..., Any] = subprocess.run) -> tuple[float | None, str]:
    """The service's watchdog timeout: the loaded unit's (drop-ins included), else the shipped one's.

    Args:
        run: How to run `systemctl` (`subprocess.run`).

    Returns:
        (seconds or None for no watchdog, what the value is, for messages).
    """
    try:
        shown = run(["systemctl", "show", "-p", "LoadState", "-p", "WatchdogUSec", UNIT],
                    capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        shown = None
    # No systemd (a container, a PC) or no unit installed yet: the unit install-service.sh installs.
    if shown is not None and shown.returncode == 0:
        props = dict(line.partition("=")[::2] for line in shown.stdout.splitlines())
        seconds = parse_timespan(props.get("WatchdogUSec", ""))
        if props.get("LoadState") == "loaded" and seconds is not None:
            no_watchdog = seconds == 0 or seconds == float("inf")
            return (None if no_watchdog else seconds), f"WatchdogSec of the installed {UNIT}"
    return UNIT_WATCHDOG_SEC, f"WatchdogSec of systemd/{UNIT}"


@click.command("check-config")
@click.argument("file", type=click.Path(path_type=Path, readable=False))
def check_config(file: Path) -> None:
    """Check a service config file: syntax, keys, values and the files it names.

    A config that passes is one `edge-classify run --config FILE` starts with (files it names
    aside, which are listed as problems); [service] stall_after is checked against the
    installed unit's WatchdogSec, or the shipped unit's when systemd has none loaded.
    """
    config = cfg.load(file)
    cfg.check_watchdog(config, *unit_watchdog())
    problems = cfg.missing_files(config)
    click.echo(f"{file}: valid")
    for line in summary(config):
        click.echo(f"  {line}")
    for problem in problems:
        click.echo(f"problem: {problem}", err=True)
    if problems:
        sys.exit(1)


@click.command("run")
@click.option("--config", "config_path", type=click.Path(path_type=Path, readable=False), default=None,
              help="Config file (default: $EDGE_SDK_CONFIG, else /etc/edge-sdk/config.toml).")
@click.option("--source", help="Override [source] uri.")
@click.option("--source-option", "source_option", type=SourceOption(), multiple=True,
              help="Set one of [source] options, repeatable: KEY=VALUE, e.g. size=1280x720.")
@click.option("--model", help="Override [model] name.")
@click.option("--runtime", help="Override [model] runtime.")
@click.option("--threads", type=int, help="Override [model] threads.")
@click.option("--max-fps", type=float, help="Override [pipeline] max_fps.")
@click.option("--max-frames", type=int, help="Override [pipeline] max_frames.")
@click.option("--mqtt-host", help="Override [mqtt] host (and switch MQTT on).")
@click.option("--mqtt-port", type=int, help="Override [mqtt] port.")
@click.option("--device-id", help="Override [mqtt] device_id.")
@click.option("--web", "web_bind", metavar="ADDR:PORT", help="Override [web] bind (and switch it on).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              help="Override [service] log_level.")
def run(config_path: Path | None, log_level: str | None,
        source_option: tuple[tuple[str, Any], ...], **flags: Any) -> None:
    """Run the service: the pipeline the config describes, until SIGTERM.

    Command-line options override the config file. Under systemd it reports READY, WATCHDOG,
    STATUS and STOPPING (Type=notify). A configuration error exits with status 78 (EX_CONFIG),
    which the unit does not restart on; other failures exit with 1.
    """
    from edge_sdk.service.notify import SystemdNotifier
    from edge_sdk.service.runner import run_service, setup_logging

    try:
        config = apply_overrides(cfg.find(config_path), log_level=log_level,
                                 source_options=dict(source_option), **flags)
        setup_logging(config.service.log_level)
        code = run_service(config)
    except EdgeSDKError as exc:
        # `systemctl status` shows why, not only the journal.
        with contextlib.closing(SystemdNotifier()) as notifier:
            notifier.status(f"failed: {exc}")
        if isinstance(exc, ConfigError):
            # Restarting cannot fix a config; other errors (camera, broker) may pass, so they
            # keep exit status 1 and systemd's Restart=on-failure.
            raise ConfigProblem(str(exc)) from None
        raise
    sys.exit(code)


#: `run` option -> the (table, key) it overrides.
OVERRIDES = {
    "source": ("source", "uri"), "model": ("model", "name"), "runtime": ("model", "runtime"),
    "threads": ("model", "threads"), "max_fps": ("pipeline", "max_fps"),
    "max_frames": ("pipeline", "max_frames"), "mqtt_host": ("mqtt", "host"),
    "mqtt_port": ("mqtt", "port"), "device_id": ("mqtt", "device_id"),
    "web_bind": ("web", "bind"), "log_level": ("service", "log_level"),
}
#: Options that also switch their table on.
_ENABLES = frozenset({"mqtt_host", "web_bind"})
#: Source options that exclude each other, both ways: one switched on by the command line
#: leaves the file's other out (the command line says what this run is for).
_EXCLUSIVE = (("watch", "loop"), ("loop", "watch"))


def apply_overrides(config: Config, *, source_options: Mapping[str, Any] | None = None,
                    **flags: Any) -> Config:
    """Apply `run`'s command-line options (None: not given) on top of the config.

    `source_options` (``--source-option``) are merged into [source] options, each key
    replacing the file's; ``watch`` or ``loop`` switched on also leaves out the file's other.

    Raises:
        ConfigError: an option's value is refused, checked like the file's (one error naming
            the table and key, as `check-config` would).
    """
    changes: dict[str, dict[str, Any]] = {}
    kept = dict(config.source.options)
    if flags.get("source") is not None and kept:
        # The file's options were for the file's source: keep those the new one takes too.
        from edge_sdk import registry
        from edge_sdk.sources import route

        new_uri = str(flags["source"])
        try:
            kind = route(new_uri, kept)
        except ConfigError:  # the file's watch on the new source, a file: leave watch out
            kind = route(new_uri)
        taken = set(registry.accepted_options(registry.resolve("sources", kind)))
        dropped = sorted(set(kept) - taken)
        if dropped:
            # Said before the service's logging is set up, so straight to stderr.
            click.echo(f"warning: --source {new_uri}: left out the config's [source] options "
                       f"{', '.join(dropped)}, which that source does not take", err=True)
            kept = {k: v for k, v in kept.items() if k in taken}
        changes["source"] = {"options": kept}
    if source_options:
        for given, other in _EXCLUSIVE:
            if source_options.get(given) is True and kept.get(other) and other not in source_options:
                click.echo(f"warning: --source-option {given}=true: left out the config's "
                           f"{other} = true, which {given} excludes", err=True)
                del kept[other]
        changes["source"] = {"options": {**kept, **source_options}}
    for flag, value in flags.items():
        if value is None:
            continue
        table, key = OVERRIDES[flag]
        changes.setdefault(table, {})[key] = value
        if flag in _ENABLES:
            changes[table]["enabled"] = True
    if "mqtt" in changes and not changes["mqtt"].get("enabled", config.mqtt.enabled):
        # --mqtt-port or --device-id alone would change nothing, silently.
        given = ", ".join(f"--{f.replace('_', '-')}" for f in ("mqtt_port", "device_id")
                          if flags.get(f) is not None)
        raise ConfigError(f"command line: {given} needs MQTT switched on; add --mqtt-host HOST "
                          "or set [mqtt] enabled = true")
    # One replace per table: e.g. --web's bind and enabled must be checked together.
    for table, values in changes.items():
        config = config.replace(table, **values)
    return config
