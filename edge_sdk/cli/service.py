"""`edge-classify check-config FILE` and `edge-classify run [--config FILE]`: the service."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from edge_sdk import config as cfg
from edge_sdk.config import Config


def summary(config: Config) -> list[str]:
    """A few lines saying what the config will do."""
    m, lines = config.model, []
    lines.append(f"source:  {config.source.uri}")
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
    if not (config.mqtt.enabled or config.web.enabled or config.overlay.enabled
            or config.jsonl.enabled):
        lines.append("outputs: none switched on (enable [mqtt], [web], [overlay] or [jsonl])")
    return lines


@click.command("check-config")
@click.argument("file", type=click.Path(path_type=Path))
def check_config(file: Path) -> None:
    """Check a service config file: syntax, keys, values and the files it names."""
    config = cfg.load(file)
    problems = cfg.missing_files(config)
    click.echo(f"{file}: valid")
    for line in summary(config):
        click.echo(f"  {line}")
    for problem in problems:
        click.echo(f"problem: {problem}", err=True)
    if problems:
        sys.exit(1)


@click.command("run")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Config file (default: $EDGE_SDK_CONFIG, else /etc/edge-sdk/config.toml).")
@click.option("--source", help="Override [source] uri.")
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
def run(config_path: Path | None, log_level: str | None, **flags: Any) -> None:
    """Run the service: the pipeline the config describes, until SIGTERM.

    Command-line options override the config file. Under systemd it reports READY, WATCHDOG,
    STATUS and STOPPING (Type=notify).
    """
    from edge_sdk.service.runner import run_service, setup_logging

    config = apply_overrides(cfg.find(config_path), log_level=log_level, **flags)
    setup_logging(config.service.log_level)
    sys.exit(run_service(config))


def apply_overrides(config: Config, **flags: Any) -> Config:
    """Apply `run`'s command-line options (None: not given) on top of the config."""
    table_keys = {
        "source": ("source", "uri"), "model": ("model", "name"), "runtime": ("model", "runtime"),
        "threads": ("model", "threads"), "max_fps": ("pipeline", "max_fps"),
        "max_frames": ("pipeline", "max_frames"), "mqtt_host": ("mqtt", "host"),
        "mqtt_port": ("mqtt", "port"), "device_id": ("mqtt", "device_id"),
        "web_bind": ("web", "bind"), "log_level": ("service", "log_level"),
    }
    for flag, value in flags.items():
        if value is None:
            continue
        table, key = table_keys[flag]
        config = config.replace(table, **{key: value})
        if flag == "mqtt_host":
            config = config.replace("mqtt", enabled=True)
        if flag == "web_bind":
            config = config.replace("web", enabled=True)
    return config
