"""The service's TOML config, parsed with `tomllib` into frozen dataclasses.

Where the file is: ``--config FILE``, else ``$EDGE_SDK_CONFIG``, else
``/etc/edge-sdk/config.toml`` if it exists, else every default. ``systemd/config.example.toml``
explains every option; its tables are the dataclasses below, one per table, and each field's
metadata carries its help text, accepted values and range.

Errors name the file, table and key, and say what is accepted. Unknown tables and keys are
refused (a typo must not silently fall back to a default). Secrets never live here: a
``password`` or ``token`` key is refused with a pointer to the ``*_file`` option or systemd
credential that replaces it. Beyond each key's type and range, a config is checked with the
sinks' own rules (MQTT topic parts, the web view's bind address and token requirement), so one
that loads is one the service can start with; `Config.replace` (the command-line overrides)
checks the same. `[service] stall_after` depends on the unit's WatchdogSec, so it has its own
check, `check_watchdog`.
"""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import math
import os
import stat
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from edge_sdk import registry
from edge_sdk.errors import ConfigError, file_problem
from edge_sdk.models.store import PRECISIONS
from edge_sdk.runtimes import MAX_THREADS

#: Where the service looks when neither --config nor $EDGE_SDK_CONFIG says otherwise.
DEFAULT_PATH = Path("/etc/edge-sdk/config.toml")
ENV_VAR = "EDGE_SDK_CONFIG"

#: Keys that would hold a secret, and what to use instead.
_SECRET_KEYS = {
    "password": "put the password in a file (mode 0600) and set password_file, or give the "
    "service the systemd credential mqtt-password (LoadCredential=)",
    "token": "put the token in a file (mode 0600) and set token_file",
}


def opt(default: Any, doc: str, *,
        choices: tuple[Any, ...] | Callable[[], tuple[Any, ...]] = (),
        minimum: float | None = None, maximum: float | None = None,
        smallest: float | None = None) -> Any:
    """Declare one config key: its default, help text, and accepted values or range.

    `choices` may be a function, asked when a value is checked (for names plugins add).
    `smallest` is the least value other than 0 (for rates where 0 means "off": a rate of
    1e-300 would be a wait of ~forever, which overflows the clocks it is timed with).
    """
    meta = {"doc": doc, "choices": choices, "min": minimum, "max": maximum, "smallest": smallest}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ModelConfig:
    """[model]: which model, on which runtime."""

    name: str = opt("squeezenet1.1", "zoo name (edge-classify models list) or a .tflite/.onnx path")
    runtime: str = opt("litert", "inference runtime: litert, onnxruntime, opencv or a plugin's",
                       choices=lambda: tuple(registry.names("runtimes")))
    precision: str = opt("int8", "for zoo names: the built model to use", choices=PRECISIONS)
    threads: int = opt(0, "runtime threads; 0 lets the runtime choose", minimum=0, maximum=MAX_THREADS)
    top_k: int = opt(5, "classes per prediction", minimum=1, maximum=1000)
    threshold: float = opt(0.0, "leave out classes scoring below this", minimum=0.0, maximum=1.0)
    home: str = opt("", "model cache folder (EDGE_SDK_HOME); empty: $EDGE_SDK_HOME or ~/.cache/edge-sdk")
    mirror: str = opt("", "folder of model sources for building; empty: $EDGE_SDK_MODEL_MIRROR")


@dataclass(frozen=True)
class SourceConfig:
    """[source]: where frames come from."""

    uri: str = opt("0", "camera index, v4l2:///dev/videoN, csi://0, rtsp://..., http://..., a "
                   "file, a folder, gst://..., or test://")
    # A table of its own (checked against the source the uri names); a dict has no hash.
    options: dict[str, Any] = field(default_factory=dict, hash=False, metadata={
        "doc": "the source's own options, e.g. {size = \"1280x720\", fps = 30} for a camera or "
               "{transport = \"udp\"} for RTSP (docs/sources.md lists each source's)"})


@dataclass(frozen=True)
class PipelineConfig:
    """[pipeline]: pacing and smoothing."""

    max_fps: float = opt(0.0, "publish at most this many predictions per second; 0: no limit",
                         minimum=0.0, maximum=1000.0, smallest=0.001)
    max_frames: int = opt(0, "stop after this many predictions; 0: run until stopped", minimum=0)
    smoothing: int = opt(0, "average scores over the last N frames (stops label flicker); 0: off",
                         minimum=0, maximum=1000)
    keep_all: bool = opt(False, "process every frame of a file instead of the newest (offline runs)")
    realtime: bool = opt(False, "pace a file source at its own frame rate, like a camera")


@dataclass(frozen=True)
class MqttConfig:
    """[mqtt]: publish predictions to a broker (see docs/mqtt.md)."""

    enabled: bool = opt(False, "publish predictions over MQTT")
    host: str = opt("localhost", "broker host name or address")
    port: int = opt(0, "broker port; 0: 8883 with TLS, else 1883", minimum=0, maximum=65535)
    device_id: str = opt("", "this device's id in topics; empty: the host name")
    prefix: str = opt("edge-sdk", "first topic level: {prefix}/{device_id}/prediction and /status")
    qos: int = opt(1, "MQTT QoS of predictions; 1 survives broker restarts", choices=(0, 1, 2))
    on_change: bool = opt(False, "publish only when the top label changes")
    hysteresis: int = opt(3, "predictions in a row a new label needs to count as a change",
                          minimum=1, maximum=1000)
    min_interval: float = opt(1.0, "seconds between two change publications", minimum=0.0)
    interval: float = opt(0.0, "publish every N seconds (a heartbeat with on_change); 0: off",
                          minimum=0.0)
    tls: bool = opt(False, "use TLS (implied by ca_file or certfile); without ca_file, the system CAs")
    ca_file: str = opt("", "CA certificate (PEM) to verify the broker with")
    certfile: str = opt("", "client certificate (PEM) for brokers that want one")
    keyfile: str = opt("", "the client certificate's private key (PEM)")
    username: str = opt("", "broker user name; empty: anonymous")
    password_file: str = opt("", "file whose first line is the password; empty: the systemd "
                             "credential mqtt-password if the service has one")
    keepalive: int = opt(30, "seconds between keep-alive pings", minimum=5, maximum=3600)
    queue_size: int = opt(1000, "predictions held while the broker is away; more are counted "
                          "as overflow", minimum=1, maximum=100_000)
    discovery: bool = opt(True, "announce sensors to Home Assistant (MQTT discovery)")
    discovery_prefix: str = opt("homeassistant", "Home Assistant's discovery prefix")
    reconnect_min: float = opt(1.0, "first reconnect delay in seconds (doubles on each failure)",
                               minimum=0.01, maximum=3600.0)
    reconnect_max: float = opt(15.0, "longest reconnect delay in seconds", minimum=0.01,
                               maximum=3600.0)
    protocol: str = opt("5", "MQTT version: \"5\" (the broker's refusals are seen and counted) or "
                        "\"3.1.1\" for brokers without MQTT 5", choices=("5", "3.1.1"))
    spool: str = opt("", "file where a stop keeps the predictions the broker has not acknowledged, "
                     "sent first at the next start; empty: none (they are dropped and counted)")
    spool_every: float = opt(5.0, "seconds between the spool's checkpoints while predictions wait "
                             "for the broker (what a power cut can lose)", minimum=0.1,
                             maximum=3600.0)


@dataclass(frozen=True)
class WebConfig:
    """[web]: the headless web view (live video, predictions, /metrics)."""

    enabled: bool = opt(False, "serve the web view")
    bind: str = opt("127.0.0.1:8080", "address:port to listen on; any address other than "
                    "loopback needs token_file (or insecure = true)")
    token_file: str = opt("", "file whose first line is the access token")
    insecure: bool = opt(False, "allow a non-loopback bind without a token (trusted networks only)")
    quality: int = opt(80, "JPEG quality of the video stream", minimum=1, maximum=100)
    max_width: int = opt(640, "scale streamed frames down to this width; 0: full size", minimum=0)
    stream_fps: float = opt(15.0, "frames per second streamed to viewers; 0: every frame",
                            minimum=0.0, maximum=1000.0, smallest=0.01)


@dataclass(frozen=True)
class OverlayConfig:
    """[overlay]: a window on the board's own display (switched off when there is none)."""

    enabled: bool = opt(False, "show the overlay window")


@dataclass(frozen=True)
class JsonlConfig:
    """[jsonl]: one JSON line per prediction to a file."""

    enabled: bool = opt(False, "write predictions as JSON lines")
    path: str = opt("-", "file to append to; '-' is standard output (the journal under systemd)")


@dataclass(frozen=True)
class ServiceConfig:
    """[service]: how the service runs under systemd."""

    log_level: str = opt("info", "log verbosity", choices=("debug", "info", "warning", "error"))
    status_every: float = opt(5.0, "seconds between systemd STATUS updates", minimum=0.5,
                              maximum=3600.0)
    stall_after: float = opt(0.0, "seconds without a prediction before watchdog pings stop; "
                             "0: half of WatchdogSec; must be below WatchdogSec (check_watchdog)",
                             minimum=0.0)


@dataclass(frozen=True)
class Config:
    """The whole config: one attribute per table, plus the file it came from."""

    model: ModelConfig = field(default_factory=ModelConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    web: WebConfig = field(default_factory=WebConfig)
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    jsonl: JsonlConfig = field(default_factory=JsonlConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    #: Plugin sinks, from ``[sinks.NAME]`` tables: entry-point name -> constructor options.
    #: Left out of the hash (a dict is not hashable), so a Config stays usable as a key.
    sinks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)
    path: str = ""

    def replace(self, table: str, **values: Any) -> Config:
        """Return a copy with keys of `table` changed, checked like the file's values.

        The whole result is checked, cross-checks included (e.g. a non-loopback [web] bind
        needs a token), so give keys that only make sense together in one call.

        Raises:
            ConfigError: unknown table or key, or a value that is not accepted.
        """
        section = getattr(self, table, None) if table in TABLES else None
        if section is None:
            raise ConfigError(f"no config table [{table}]; tables: {', '.join(TABLES)}")
        where = "command line"
        checked = _check_table(table, values, type(section), where=where)
        config = dataclasses.replace(self, **{table: dataclasses.replace(section, **checked)})
        _cross_checks(config, where)
        return config


#: Table name -> its dataclass, in the order the example file lists them.
#: The TOML table whose sub-tables configure plugin sinks (``[sinks.NAME]``).
PLUGIN_SINKS = "sinks"

TABLES: dict[str, type[Any]] = {
    f.name: f.default_factory  # type: ignore[misc]
    for f in dataclasses.fields(Config)
    if f.name not in ("path", PLUGIN_SINKS)
}


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is dict:
        return "a table, e.g. {key = value}"
    return {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}.get(
        tp, str(tp)
    )


def _check_value(where: str, key: str, value: Any, tp: Any, meta: Mapping[str, Any]) -> Any:
    # TOML's booleans are not integers here: `qos = true` is a mistake, not 1.
    if typing.get_origin(tp) is dict:  # its keys are checked against what they configure
        ok = isinstance(value, dict)
    elif tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        # TOML has nan and inf; both pass every range check below, so they are refused here.
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, tp)
    if not ok:
        shown = value.isoformat() if isinstance(value, (datetime.date, datetime.time)) else repr(value)
        raise ConfigError(f"{where} {key} = {shown} must be {_type_name(tp)}")
    choices = meta.get("choices") or ()
    if callable(choices):
        choices = choices()
    if choices and value not in choices:
        shown = ", ".join(repr(c) if isinstance(c, str) else str(c) for c in choices)
        raise ConfigError(f"{where} {key} = {value!r} is not accepted; choose one of: {shown}")
    low, high = meta.get("min"), meta.get("max")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ConfigError(f"{where} {key} = {value!r} is out of range; it must be {bounds}")
    smallest = meta.get("smallest")
    if smallest is not None and 0 < value < smallest:
        raise ConfigError(f"{where} {key} = {value!r} is too small; it must be 0 or at least {smallest}")
    return value


def _check_table(table: str, values: Mapping[str, Any], cls: type[Any], where: str) -> dict[str, Any]:
    label = f"{where}: [{table}]"
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if key in _SECRET_KEYS and key not in fields:
            raise ConfigError(
                f"{label} {key}: secrets do not belong in the config file; {_SECRET_KEYS[key]}"
            )
        if key not in fields:
            raise ConfigError(f"{label} has no key {key!r}; accepted: {', '.join(fields)}")
        checked[key] = _check_value(label, key, value, hints[key], fields[key].metadata)
    return checked


def _cross_checks(config: Config, where: str) -> None:
    _check_source(config.source, where)
    _check_model(config.model, where)
    _check_mqtt(config.mqtt, where)
    _check_web(config.web, where)


def _check_source(source: SourceConfig, where: str) -> None:
    # The URI's form (scheme, host, port), as opening it would check it, without opening it: a
    # camera that is not plugged in yet is not a config error, a misspelt scheme is.
    from edge_sdk.sources import check_options, check_uri

    try:
        check_uri(source.uri)
    except ConfigError as exc:
        raise ConfigError(f"{where}: [source] uri: {exc}") from None
    try:
        check_options(source.uri, source.options)
    except ConfigError as exc:
        raise ConfigError(f"{where}: [source] options: {exc}") from None


def _check_model(model: ModelConfig, where: str) -> None:
    # A name that is neither a zoo model nor a model file's path is a slip; whether the file is
    # there is left to the service's start and `doctor` (it may be copied in after the config).
    from edge_sdk.models import ZOO

    name = model.name
    if name not in ZOO and os.sep not in name and Path(name).suffix.lower() not in (".tflite", ".onnx"):
        raise ConfigError(
            f"{where}: [model] name = {name!r} is no zoo model; choose one of: {', '.join(ZOO)}, "
            "or give the path of a .tflite or .onnx file"
        )


def _check_mqtt(mqtt: MqttConfig, where: str) -> None:
    # What MqttSink refuses beyond the fields' ranges and choices, decided by the sink's own
    # rules where it has them, so that a config that passes here does not crash the service.
    from edge_sdk.sinks.mqtt import check_broker_host, check_topic_part

    if mqtt.reconnect_min > mqtt.reconnect_max:
        raise ConfigError(
            f"{where}: [mqtt] reconnect_min = {mqtt.reconnect_min} is above reconnect_max = "
            f"{mqtt.reconnect_max}; make reconnect_min <= reconnect_max (whose default is "
            f"{MqttConfig.reconnect_max:g} s)"
        )
    if mqtt.password_file and not mqtt.username:
        raise ConfigError(f"{where}: [mqtt] password_file is set but username is not; set username")
    if mqtt.keyfile and not mqtt.certfile:
        raise ConfigError(f"{where}: [mqtt] keyfile needs certfile (the client certificate)")
    if mqtt.spool and mqtt.qos == 0:
        raise ConfigError(f"{where}: [mqtt] spool needs qos = 1 or 2 (QoS 0 keeps nothing to "
                          "spool); raise qos or leave spool empty")
    if not mqtt.host.strip():
        raise ConfigError(f"{where}: [mqtt] host is empty; set it to the broker's host name or "
                          'address, e.g. host = "localhost"')
    try:
        check_broker_host(mqtt.host)
    except ValueError as exc:
        raise ConfigError(f"{where}: [mqtt] {exc}") from None
    defaults = MqttConfig()
    for part, slashes in (("device_id", False), ("prefix", True), ("discovery_prefix", True)):
        value = getattr(mqtt, part)
        if part == "device_id" and not value:
            continue  # the host name, which the sink checks when it starts
        try:
            check_topic_part(part, value, slashes=slashes)
        except ValueError:
            if not value:
                raise ConfigError(f"{where}: [mqtt] {part} must not be empty; e.g. {part} = "
                                  f"{as_toml_value(getattr(defaults, part))}") from None
            banned, use = (("'+', '#' or NUL", "'-', '_' and '/'") if slashes
                           else ("'+', '#', '/' or NUL", "'-' and '_'"))
            raise ConfigError(f"{where}: [mqtt] {part} = {value!r} must not contain {banned}; "
                              f"use letters, digits, {use}") from None


def _check_web(web: WebConfig, where: str) -> None:
    # The web view's own parsing and access rule (edge_sdk.web.access), as WebSink applies them.
    from edge_sdk.web.access import AccessPolicy, BindAddress

    if ":" not in web.bind:
        raise ConfigError(f"{where}: [web] bind = {web.bind!r} must be ADDRESS:PORT, "
                          "e.g. 127.0.0.1:8080")
    try:
        address = BindAddress.parse(web.bind)
    except ConfigError as exc:
        raise ConfigError(f"{where}: [web] {exc}") from None
    # Only a web view that runs exposes the camera. With insecure = true the policy never
    # refuses (it only logs a warning, which belongs to the service's start, not to a check).
    if web.enabled and not web.insecure:
        try:
            # Whether a token is given is all that matters here: the view reads token_file
            # when it starts, and missing_files() reports a file that is not there.
            AccessPolicy(address, "token_file" if web.token_file else None)
        except ConfigError:
            raise ConfigError(
                f"{where}: [web] bind = {web.bind!r} lets other machines watch the camera; set "
                "token_file (a file holding a random token: openssl rand -hex 24 > FILE), or "
                "insecure = true on a network you trust, or bind 127.0.0.1"
            ) from None


def check_watchdog(config: Config, watchdog: float | None, what: str) -> None:
    """Check `[service] stall_after` against a systemd watchdog timeout, as the service will.

    Separate from `load` because the timeout is the unit's (``WatchdogSec=``), not the file's:
    the service checks it against the one systemd gave it, `check-config` against the unit's.

    Args:
        config: The config to check.
        watchdog: The watchdog timeout in seconds; None: no watchdog, so any value is fine.
        what: Where the timeout comes from, for the message (e.g. "the unit's WatchdogSec").

    Raises:
        ConfigError: stall_after is not below the watchdog timeout, or [pipeline] max_fps
            spaces predictions further apart than stall_after.
    """
    from edge_sdk.service.watchdog import effective_stall_after

    stall = config.service.stall_after
    try:
        effective = effective_stall_after(stall or None, watchdog)
    except ValueError:
        raise ConfigError(
            f"{config.path or 'config'}: [service] stall_after = {stall:g} must be below {what} "
            f"({watchdog:g} s); lower stall_after (0: half of WatchdogSec) or raise WatchdogSec "
            "(systemctl edit edge-classify)"
        ) from None
    max_fps = config.pipeline.max_fps
    if watchdog and max_fps and 1.0 / max_fps >= effective:
        # Predictions that far apart stop the pings between any two of them: the watchdog
        # would restart the service for ever and the log would blame the camera.
        raise ConfigError(
            f"{config.path or 'config'}: [pipeline] max_fps = {max_fps:g} leaves {1 / max_fps:g} s "
            f"between predictions, not less than the {effective:g} s after which the watchdog "
            f"pings stop ({what} {watchdog:g} s); raise max_fps above {1 / effective:.3g} or "
            "raise stall_after and WatchdogSec"
        )


def _check_plugin_sinks(tables: Any, where: str) -> dict[str, dict[str, Any]]:
    """Check the ``[sinks.NAME]`` tables: sinks the registry knows, and options they accept.

    NAME is an entry-point sink (docs/plugins.md) or a built-in one without a table of its own
    (``video``). The sink classes are imported here, not constructed, so a config that loads
    names sinks the service can make.
    """
    if not isinstance(tables, dict) or not all(isinstance(v, dict) for v in tables.values()):
        raise ConfigError(
            f"{where}: [{PLUGIN_SINKS}] holds one table per extra sink: write [{PLUGIN_SINKS}.NAME] "
            "with that sink's options under it"
        )
    known = [n for n in registry.names("sinks") if n not in TABLES]
    checked: dict[str, dict[str, Any]] = {}
    for name, options in tables.items():
        table = f"[{PLUGIN_SINKS}.{name}]"
        if name in TABLES:
            raise ConfigError(f"{where}: {table}: {name} is a built-in table; configure it in [{name}]")
        for key in options:
            if key in _SECRET_KEYS:
                raise ConfigError(
                    f"{where}: {table} {key}: secrets do not belong in the config file; "
                    "put it in a file (mode 0600) and give the sink that file's path"
                )
        if name not in known:
            raise ConfigError(
                f"{where}: {table}: no sink named {name!r} is installed (available: {', '.join(known)}); "
                "install the plugin or fix the name"
            )
        cls = registry.resolve("sinks", name)
        registry.check_options(cls, options, f"{where}: {table}")
        _check_option_kinds(cls, options, f"{where}: {table}")
        _check_required_options(cls, options, f"{where}: {table}")
        checked[name] = dict(options)
    return checked


def _check_required_options(cls: type[Any], options: Mapping[str, Any], what: str) -> None:
    """Refuse a ``[sinks.NAME]`` table without an option the constructor cannot do without
    (``[sinks.video]`` with no ``path``), instead of a TypeError at the service's start."""
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):  # no signature to read: the constructor is the judge
        return
    missing = [p.name for p in params
               if p.default is inspect.Parameter.empty and p.name not in options
               and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    if missing:
        raise ConfigError(f"{what} needs {', '.join(missing)}; add "
                          f"{' and '.join(f'{m} = ...' for m in missing)} to it")


def _check_option_kinds(cls: type[Any], options: Mapping[str, Any], what: str) -> None:
    """Refuse a value the constructor's annotation rules out (``path = 5``), so check-config
    catches it instead of the service's start."""
    problem = registry.option_type_problem(cls, options)
    if problem is not None:
        key, value, kinds = problem
        raise ConfigError(f"{what} {key} = {as_toml_value(value)} must be {kinds}")


def parse(data: Mapping[str, Any], where: str = "config") -> Config:
    """Build a Config from parsed TOML.

    Args:
        data: What `tomllib` returned.
        where: Name of the file, for error messages.

    Raises:
        ConfigError: unknown table or key, a secret, a wrong type, value or range; a
            ``[sinks.NAME]`` sink that is not installed or an option it does not take.
        BackendUnavailable: a ``[sinks.NAME]`` plugin needs a package that is not installed.
    """
    tables: dict[str, Any] = {}
    for table, values in data.items():
        if table == PLUGIN_SINKS:
            tables[table] = _check_plugin_sinks(values, where)
            continue
        if table not in TABLES:
            hint = _SECRET_KEYS.get(table)
            if hint:
                raise ConfigError(f"{where}: {table}: secrets do not belong in the config file; {hint}")
            raise ConfigError(
                f"{where}: unknown table [{table}] (or a key outside any table); "
                f"tables: {', '.join(f'[{t}]' for t in TABLES)}, [{PLUGIN_SINKS}.NAME]"
            )
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: {table} must be a table: write [{table}] on its own line")
        cls = TABLES[table]
        tables[table] = cls(**_check_table(table, values, cls, where))
    config = Config(**tables, path=where)
    _cross_checks(config, where)
    return config


#: A config is a few KiB; this bounds what a wrong path (a log, an image) makes us read.
_MAX_CONFIG_BYTES = 1024 * 1024


def load(path: str | os.PathLike[str]) -> Config:
    """Read and check one TOML config file.

    Raises:
        ConfigError: the file is missing, unreadable, not TOML, or has a bad value.
    """
    where = os.fspath(path) or repr(os.fspath(path))
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            # A FIFO would block the start for ever, a device such as /dev/zero never end.
            raise ConfigError(f"config file {where} is not a regular file; give a TOML file")
        with open(path, "rb") as file:
            raw = file.read(_MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(
            f"config file {where} does not exist; copy systemd/config.example.toml there"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {where}: {file_problem(exc)}") from None
    if len(raw) > _MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {where} is over {_MAX_CONFIG_BYTES // 1024} KiB; is it the "
                          "right file?")
    try:
        # utf-8-sig: Windows editors save a byte-order mark, which TOML does not allow.
        data = tomllib.loads(raw.decode("utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}; fix that line") from None
    except RecursionError:  # tomllib recurses into nested arrays and inline tables
        raise ConfigError(f"{where} nests arrays or tables too deeply to be a config") from None
    return parse(data, where)


def find(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the config the service should use: `path`, $EDGE_SDK_CONFIG, /etc/edge-sdk, defaults."""
    if path:
        return load(path)
    env = os.environ.get(ENV_VAR)
    if env:
        return load(env)
    if DEFAULT_PATH.is_file():
        return load(DEFAULT_PATH)
    return Config()


def missing_files(config: Config) -> list[str]:
    """Return one line per file the config names that is not there or not readable, and per
    secret file (MQTT password, web token) that the service would refuse (empty, not text).

    Checked only for the tables that are switched on; the model is checked by `doctor`.
    """
    named: list[tuple[str, str]] = []
    if config.mqtt.enabled:
        named += [(f"[mqtt] {k}", getattr(config.mqtt, k))
                  for k in ("ca_file", "certfile", "keyfile", "password_file")]
    if config.web.enabled:
        named.append(("[web] token_file", config.web.token_file))
    problems = _jsonl_path_problems(config) + _video_sink_problems(config)
    if config.mqtt.enabled and config.mqtt.spool:
        from edge_sdk.sinks.mqtt_spool import MqttSpool

        spool = config.mqtt.spool
        if config.jsonl.enabled and os.path.abspath(spool) == os.path.abspath(config.jsonl.path):
            # A spool's lines are not predictions: the log would be set aside at each start.
            problems.append(f"[mqtt] spool = {spool!r} is also [jsonl] path; give it a file of "
                            "its own")
        try:
            MqttSpool(spool)
        except ConfigError as exc:
            problems.append(f"[mqtt] {exc}")
    for what, value in named:
        if not value:
            continue
        path = Path(value)
        if not path.is_file():
            kind = "not a file" if path.exists() else "no such file"
            problems.append(f"{what} = {value!r}: {kind}; create it or fix the path")
        elif not os.access(path, os.R_OK):
            problems.append(f"{what} = {value!r}: not readable; chmod/chown it for the service user")
        elif what in _SECRET_READERS:
            try:
                _SECRET_READERS[what](path)
            except ConfigError as exc:
                problems.append(f"{what} = {value!r}: {exc}")
    return problems


def _jsonl_path_problems(config: Config) -> list[str]:
    """Whether the service could open its [jsonl] file, said as check-config says problems."""
    path = config.jsonl.path
    if not config.jsonl.enabled or path == "-":
        return []
    what = f"[jsonl] path = {path!r}"
    folder = Path(path).parent
    if not path or "\0" in path:
        return [f"{what}: not a file name; give a file to append to, or '-' for standard output"]
    if Path(path).is_dir():
        return [f"{what}: is a folder; give a file in it, e.g. {str(Path(path) / 'predictions.jsonl')!r}"]
    if not folder.is_dir():
        return [f"{what}: the folder {str(folder)!r} does not exist; create it or fix the path"]
    if not os.access(path if Path(path).exists() else folder, os.W_OK):
        return [f"{what}: not writable; chmod/chown it (or its folder) for the service user"]
    return []


def _video_sink_problems(config: Config) -> list[str]:
    """What the built-in video sink would refuse at start: it may be made here, as making it
    only checks its options, extension and folder (the file opens with the first frame)."""
    if "video" not in config.sinks:
        return []
    from edge_sdk.errors import SinkError
    from edge_sdk.sinks.video import VideoSink

    try:
        VideoSink(**config.sinks["video"]).close()
    except (SinkError, TypeError, ValueError) as exc:
        return [f"[{PLUGIN_SINKS}.video]: {exc}"]
    return []


def _read_token_file(path: Path) -> None:
    from edge_sdk.web.access import read_token

    read_token(None, path)


def _read_password_file(path: Path) -> None:
    from edge_sdk.secrets import read_secret

    read_secret(path, "the MQTT password_file")


#: How the service reads each secret file, so check-config refuses what the start would.
_SECRET_READERS: dict[str, Callable[[Path], None]] = {
    "[mqtt] password_file": _read_password_file,
    "[web] token_file": _read_token_file,
}


def describe(cls: type[Any]) -> list[tuple[str, Any, str]]:
    """Return (key, default, help) for each key of a table's dataclass (for docs and tests)."""
    return [(f.name, default_of(f), f.metadata.get("doc", "")) for f in dataclasses.fields(cls)]


def default_of(f: dataclasses.Field[Any]) -> Any:
    """A config key's default (a table key's is a fresh empty dict)."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def as_toml_value(value: Any) -> str:
    """Format a default as TOML (strings quoted, booleans lower-case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


__all__ = [
    "DEFAULT_PATH",
    "PLUGIN_SINKS",
    "TABLES",
    "Config",
    "JsonlConfig",
    "ModelConfig",
    "MqttConfig",
    "OverlayConfig",
    "PipelineConfig",
    "ServiceConfig",
    "SourceConfig",
    "WebConfig",
    "check_watchdog",
    "default_of",
    "describe",
    "find",
    "load",
    "missing_files",
    "parse",
]
