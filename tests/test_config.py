"""The service config: TOML into frozen dataclasses, strict keys, errors that name the fix."""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edge_sdk import config as cfg
from edge_sdk import registry
from edge_sdk.cli.errors import EX_CONFIG
from edge_sdk.cli.main import cli
from edge_sdk.cli.service import apply_overrides, parse_timespan, unit_watchdog
from edge_sdk.errors import ConfigError
from edge_sdk.service.runner import build_sinks, mqtt_options, web_options

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10, as edge_sdk.config reads it
    import tomli as tomllib

EXAMPLE = Path(__file__).resolve().parent.parent / "systemd" / "config.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        cfg.load(write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_example_lists_every_option_with_its_default() -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    assert list(data) == ["source", "model", "pipeline", "mqtt", "web", "overlay", "jsonl", "service"]
    for table, cls in cfg.TABLES.items():
        fields = [f.name for f in dataclasses.fields(cls)]
        assert sorted(data[table]) == sorted(fields), table
        for f in dataclasses.fields(cls):
            if (table, f.name) == ("web", "enabled"):
                continue  # the example switches the loopback web view on
            assert data[table][f.name] == cfg.default_of(f), f"[{table}] {f.name}"
            assert f.metadata["doc"], f"[{table}] {f.name} has no help text"
    config = cfg.load(EXAMPLE)
    assert config.web.enabled and not config.mqtt.enabled
    assert config.path == str(EXAMPLE)


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    config = cfg.load(write(tmp_path, ""))
    assert dataclasses.replace(config, path="") == cfg.Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.mqtt.qos = 2  # type: ignore[misc]


def test_values_are_read_into_the_tables(tmp_path: Path) -> None:
    config = cfg.load(write(tmp_path, """
        [source]
        uri = "rtsp://cam.local/stream"
        [model]
        threads = 2
        threshold = 1
        [mqtt]
        enabled = true
        host = "broker.lan"
        qos = 2
        on_change = true
        interval = 60
    """))
    assert config.source.uri == "rtsp://cam.local/stream"
    assert config.model.threads == 2 and config.model.threshold == 1.0
    assert isinstance(config.model.threshold, float)
    assert (config.mqtt.enabled, config.mqtt.host, config.mqtt.qos) == (True, "broker.lan", 2)
    assert config.mqtt.interval == 60.0


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[mqqt]\nhost = 'x'", ["unknown table [mqqt]", "[mqtt]", "[web]"]),
        ("host = 'x'", ["unknown table [host]", "outside any table"]),
        ("[mqtt]\nhots = 'x'", ["[mqtt] has no key 'hots'", "accepted:", "host", "queue_size"]),
        ("[mqtt]\nqos = 3", ["[mqtt] qos = 3 is not accepted", "choose one of: 0, 1, 2"]),
        ("[mqtt]\nqos = true", ["[mqtt] qos = True must be an integer"]),
        ("[mqtt]\nport = '1883'", ["[mqtt] port = '1883' must be an integer"]),
        ("[mqtt]\nport = 70000", ["[mqtt] port = 70000 is out of range", "between 0 and 65535"]),
        ("[mqtt]\nenabled = 1", ["[mqtt] enabled = 1 must be true or false"]),
        ("[model]\nruntime = 'tflite'", ["[model] runtime = 'tflite'", "'litert', 'onnxruntime'"]),
        ("[model]\nthreshold = 1.5", ["[model] threshold = 1.5 is out of range"]),
        ("[service]\nlog_level = 'loud'", ["[service] log_level", "'debug', 'info'"]),
        ("[mqtt]\nreconnect_min = 10.0\nreconnect_max = 1.0", ["reconnect_min", "reconnect_max"]),
        ("[mqtt]\npassword_file = '/x'", ["password_file is set but username is not"]),
        ("[mqtt]\nqos = 0\nspool = '/tmp/s.jsonl'", ["[mqtt] spool needs qos = 1 or 2"]),
        ("[mqtt]\ndevice_id = 'a/b'", ["[mqtt] device_id = 'a/b' must not contain"]),
        ("[web]\nbind = '8080'", ["[web] bind = '8080' must be ADDRESS:PORT"]),
        # What the sinks refuse, refused when the file is checked, not when the service starts.
        ("[mqtt]\nprefix = ''", ["[mqtt] prefix must not be empty", 'prefix = "edge-sdk"']),
        ("[mqtt]\ndiscovery_prefix = ''", ["[mqtt] discovery_prefix must not be empty"]),
        ("[mqtt]\nprefix = 'a/#'", ["[mqtt] prefix = 'a/#' must not contain", "'/'"]),
        ('[mqtt]\ndevice_id = "cam\\u0000"', ["[mqtt] device_id = 'cam\\x00'", "NUL"]),
        ("[mqtt]\nhost = ''", ["[mqtt] host is empty", "host name or address"]),
        ("[mqtt]\nhost = '  '", ["[mqtt] host is empty"]),
        ("[web]\nbind = '127.0.0.1:abc'", ["[web] bind", "port must be a number 0-65535"]),
        ("[web]\nbind = '127.0.0.1:70000'", ["[web] bind", "port must be a number 0-65535"]),
        ("[web]\nbind = 'camera.lan:8080'", ["[web] bind", "not an IP address", "0.0.0.0"]),
        ("[web]\nenabled = true\nbind = '0.0.0.0:8080'",
         ["[web] bind = '0.0.0.0:8080' lets other machines", "token_file", "insecure = true"]),
        ("mqtt = 3", ["mqtt must be a table"]),
        ("[mqtt\nhost = 1", ["is not valid TOML"]),
    ],
)
def test_errors_name_the_table_key_and_accepted_values(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    message = error_of(tmp_path, text)
    assert message.startswith(str(tmp_path / "config.toml"))
    for part in expected:
        assert part in message, message


@pytest.mark.parametrize("web", [
    {"enabled": True, "bind": "0.0.0.0:8080", "insecure": True},
    {"enabled": True, "bind": "[::]:8080", "token_file": "/etc/edge-sdk/web-token"},
    {"enabled": True, "bind": "localhost:8080"},
    {"enabled": False, "bind": "0.0.0.0:8080"},  # not served, so not exposed
])
def test_bind_addresses_the_web_view_accepts(web: dict[str, object]) -> None:
    assert cfg.parse({"web": web}).web.bind == web["bind"]


@pytest.mark.parametrize("table, values, expected", [
    ("mqtt", {"enabled": True, "prefix": ""}, "[mqtt] prefix"),
    ("mqtt", {"enabled": True, "host": ""}, "[mqtt] host"),
    ("mqtt", {"enabled": True, "device_id": "a/b"}, "[mqtt] device_id"),
    ("mqtt", {"enabled": True, "discovery_prefix": "ha#"}, "[mqtt] discovery_prefix"),
    ("web", {"enabled": True, "bind": "127.0.0.1:abc"}, "[web] bind"),
    ("web", {"enabled": True, "bind": "0.0.0.0:0"}, "[web] bind"),
])
def test_what_the_config_refuses_the_service_refuses_as_one_line(
    table: str, values: dict[str, object], expected: str
) -> None:
    # The file check and the sinks apply the same rules...
    with pytest.raises(ConfigError, match=re.escape(expected)):
        cfg.parse({table: values})
    # ...and a config that slipped past it (dataclasses.replace skips every check) still fails
    # as a one-line ConfigError from the real sink, never a bare ValueError.
    section = dataclasses.replace(getattr(cfg.Config(), table), **values)
    unchecked = dataclasses.replace(cfg.Config(path="svc.toml"), **{table: section})
    with pytest.raises(ConfigError) as info:
        build_sinks(unchecked)
    assert "\n" not in str(info.value)
    # MqttSink raises ValueError (turned into a ConfigError naming the file and table);
    # the web view raises ConfigError itself.
    if table == "mqtt":
        assert isinstance(info.value.__cause__, ValueError)
        assert str(info.value).startswith("svc.toml: [mqtt] "), info.value
        assert str(info.value).endswith("(then run edge-classify check-config svc.toml)")


def test_stall_after_is_checked_against_the_watchdog() -> None:
    config = cfg.parse({"service": {"stall_after": 30.0}}, where="svc.toml")
    cfg.check_watchdog(config, None, "no watchdog")  # nothing pings: anything goes
    cfg.check_watchdog(config, 31.0, "WatchdogSec")
    with pytest.raises(ConfigError) as info:
        cfg.check_watchdog(config, 30.0, "the unit's WatchdogSec")
    message = str(info.value)
    assert message.startswith("svc.toml: [service] stall_after = 30 must be below the unit's "
                              "WatchdogSec (30 s)")
    assert "systemctl edit edge-classify" in message
    cfg.check_watchdog(cfg.Config(), 0.5, "WatchdogSec")  # 0: half of it, always fine


def test_a_password_in_the_config_is_refused_with_the_way_to_do_it(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[mqtt]\nusername = 'cam'\npassword = 'hunter2'")
    assert "[mqtt] password" in message and "password_file" in message
    assert "mqtt-password" in message and "hunter2" not in message
    message = error_of(tmp_path, "[web]\ntoken = 'abc'")
    assert "[web] token" in message and "token_file" in message and "abc" not in message


def test_missing_file_and_unreadable_bytes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist; copy systemd/config\.example\.toml"):
        cfg.load(tmp_path / "nope.toml")
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not valid TOML"):
        cfg.load(bad)


def test_find_prefers_the_argument_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "env.toml"
    env_file.write_text("[source]\nuri = 'from-env'\n")
    arg_file = tmp_path / "arg.toml"
    arg_file.write_text("[source]\nuri = 'from-arg'\n")
    monkeypatch.setenv("EDGE_SDK_CONFIG", str(env_file))
    assert cfg.find().source.uri == "from-env"
    assert cfg.find(arg_file).source.uri == "from-arg"
    monkeypatch.delenv("EDGE_SDK_CONFIG")
    monkeypatch.setattr(cfg, "DEFAULT_PATH", tmp_path / "absent.toml")
    assert cfg.find() == cfg.Config()


def test_replace_checks_values_like_the_file() -> None:
    config = cfg.Config().replace("mqtt", host="10.0.0.2", qos=0)
    assert (config.mqtt.host, config.mqtt.qos) == ("10.0.0.2", 0)
    with pytest.raises(ConfigError, match=r"command line: \[mqtt\] qos = 5"):
        config.replace("mqtt", qos=5)
    with pytest.raises(ConfigError, match="no config table"):
        config.replace("nope", x=1)
    # The cross-checks too, not only each key's type and range.
    with pytest.raises(ConfigError, match=r"command line: \[mqtt\] device_id = 'a/b' must not"):
        config.replace("mqtt", device_id="a/b")
    with pytest.raises(ConfigError, match=r"command line: \[web\] bind = '0.0.0.0:8080' lets"):
        config.replace("web", bind="0.0.0.0:8080", enabled=True)


def test_run_options_override_the_file_and_are_checked_like_it(tmp_path: Path) -> None:
    config = cfg.load(write(tmp_path, "[pipeline]\nmax_frames = 100\n[web]\ninsecure = true\n"))
    changed = apply_overrides(config, max_frames=5, device_id="cam-2", mqtt_host="10.0.0.2",
                              web_bind="0.0.0.0:9000", threads=None)
    assert changed.pipeline.max_frames == 5 and changed.model.threads == 0
    assert (changed.mqtt.enabled, changed.mqtt.host, changed.mqtt.device_id) == (
        True, "10.0.0.2", "cam-2")
    assert (changed.web.enabled, changed.web.bind) == (True, "0.0.0.0:9000")
    with pytest.raises(ConfigError, match=r"\[web\] bind = '0.0.0.0:9000' lets other machines"):
        apply_overrides(cfg.Config(), web_bind="0.0.0.0:9000")
    with pytest.raises(ConfigError, match=r"\[mqtt\] host is empty"):
        apply_overrides(cfg.Config(), mqtt_host="")
    with pytest.raises(ConfigError, match=r"\[pipeline\] max_frames = -1 is out of range"):
        apply_overrides(cfg.Config(), max_frames=-1)


@pytest.mark.parametrize("args", [
    ["--mqtt-host", "b", "--device-id", "a/b"], ["--mqtt-host", ""], ["--web", "127.0.0.1:abc"],
    ["--web", "0.0.0.0:8080"], ["--max-frames", "-3"],
])
def test_run_refuses_bad_options_in_one_line_before_starting(
    tmp_path: Path, args: list[str]
) -> None:
    path = write(tmp_path, "[source]\nuri = 'test://'\n[model]\nname = 'missing.tflite'\n")
    result = CliRunner().invoke(cli, ["run", "--config", str(path), *args])
    assert result.exit_code == EX_CONFIG and "Traceback" not in result.output, result.output
    assert result.output.startswith("Error: command line: [")
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_sink_options_are_ones_the_sinks_accept() -> None:
    mqtt_cls = registry.resolve("sinks", "mqtt")
    options = mqtt_options(cfg.MqttConfig())
    assert set(options) <= set(registry.accepted_options(mqtt_cls))
    # Every MqttSink option but the service's own close timeout is configurable.
    assert set(registry.accepted_options(mqtt_cls)) - set(options) == set()
    assert options["port"] is None and options["username"] is None
    web_cls = registry.resolve("sinks", "web")
    assert set(web_options(cfg.WebConfig())) <= set(registry.accepted_options(web_cls))


@pytest.mark.parametrize("name, table, to_options", [
    ("mqtt", cfg.MqttConfig, mqtt_options), ("web", cfg.WebConfig, web_options),
])
def test_config_defaults_are_the_sinks_defaults(
    name: str, table: type[Any], to_options: Callable[[Any], dict[str, Any]]
) -> None:
    # The service must run what was benchmarked: the sink's own defaults (e.g. web max_width 640).
    sink_cls = registry.resolve("sinks", name)
    defaults = {p.name: p.default for p in inspect.signature(sink_cls.__init__).parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}
    options = to_options(table())
    options.pop("close_timeout", None)  # the service's own shutdown budget, not a config key
    assert options == {k: defaults[k] for k in options}


def test_missing_files_are_reported_for_enabled_tables_only(tmp_path: Path) -> None:
    config = cfg.parse({"mqtt": {"enabled": True, "username": "u",
                                 "password_file": str(tmp_path / "pw"), "ca_file": ""}})
    problems = cfg.missing_files(config)
    assert len(problems) == 1 and "[mqtt] password_file" in problems[0]
    off = cfg.parse({"mqtt": {"username": "u", "password_file": str(tmp_path / "pw")}})
    assert cfg.missing_files(off) == []
    spooling = cfg.parse({"mqtt": {"enabled": True, "spool": str(tmp_path / "gone" / "s.jsonl")}})
    (problem,) = cfg.missing_files(spooling)
    assert problem.startswith("[mqtt] spool ") and "no folder" in problem and "create it" in problem
    log = str(tmp_path / "p.jsonl")
    shared = cfg.parse({"mqtt": {"enabled": True, "spool": log}, "jsonl": {"enabled": True, "path": log}})
    assert cfg.missing_files(shared) == [f"[mqtt] spool = {log!r} is also [jsonl] path; give it a "
                                         "file of its own"]


@pytest.mark.parametrize(("table", "key", "value", "match"), [
    ("pipeline", "max_fps", 1e-300, "is too small; it must be 0 or at least 0.001"),
    ("web", "stream_fps", 1e-320, "is too small; it must be 0 or at least 0.01"),
    ("service", "status_every", 1e308, "out of range"),
    ("mqtt", "reconnect_min", 1e10, "out of range"),
    ("mqtt", "queue_size", 1_000_000, "out of range"),
])
def test_rates_and_delays_that_would_overflow_a_clock_are_refused(
    table: str, key: str, value: float, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        cfg.parse({table: {key: value}})


def test_max_fps_slower_than_the_watchdog_allows_is_refused() -> None:
    config = cfg.parse({"pipeline": {"max_fps": 0.05}})  # one prediction per 20 s
    cfg.check_watchdog(config, None, "no watchdog")
    with pytest.raises(ConfigError, match=r"max_fps = 0.05 leaves 20 s between predictions, not "
                                          r"less than the 15 s .* raise max_fps above 0.0667"):
        cfg.check_watchdog(config, 30.0, "the unit's WatchdogSec")
    cfg.check_watchdog(cfg.parse({"pipeline": {"max_fps": 0.1}}), 30.0, "the unit's WatchdogSec")


def test_secret_files_the_service_would_refuse_are_reported(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("")
    (tmp_path / "token").write_text("two words\n")
    config = cfg.parse({"mqtt": {"enabled": True, "username": "u", "password_file": str(tmp_path / "pw")},
                        "web": {"enabled": True, "bind": "0.0.0.0:8080",
                                "token_file": str(tmp_path / "token")}})
    problems = cfg.missing_files(config)
    assert len(problems) == 2
    assert "[mqtt] password_file" in problems[0] and "is empty" in problems[0]
    assert "[web] token_file" in problems[1] and "may hold only letters, digits" in problems[1]


def test_a_jsonl_file_the_service_could_not_open_is_reported(tmp_path: Path) -> None:
    for path, problem in ((tmp_path, "is a folder"), (tmp_path / "no" / "x.jsonl", "does not exist"),
                          ("", "not a file name")):
        config = cfg.parse({"jsonl": {"enabled": True, "path": str(path)}})
        (line,) = cfg.missing_files(config)
        assert line.startswith("[jsonl] path = ") and problem in line, line
    assert cfg.missing_files(cfg.parse({"jsonl": {"enabled": True, "path": str(tmp_path / "p.jsonl")}})) == []


def test_a_video_sink_the_service_could_not_start_is_reported(tmp_path: Path) -> None:
    for options, problem in (({"path": str(tmp_path / "no" / "v.mp4")}, "does not exist"),
                             ({"path": str(tmp_path / "v.txt")}, "cannot tell the video format"),
                             ({"path": str(tmp_path / "v.mp4"), "fps": -3.0}, "fps must be")):
        (line,) = cfg.missing_files(cfg.parse({"sinks": {"video": options}}))
        assert line.startswith("[sinks.video]: ") and problem in line, line
    assert cfg.missing_files(cfg.parse({"sinks": {"video": {"path": str(tmp_path / "v.mp4")}}})) == []
    assert not list(tmp_path.iterdir())  # checked, not recorded


def test_a_plugin_sink_table_without_a_required_option_fails_at_load() -> None:
    with pytest.raises(ConfigError, match=r"\[sinks.video\] needs path; add path = ... to it"):
        cfg.parse({"sinks": {"video": {"fps": 10.0}}})


def test_mqtt_options_without_mqtt_switched_on_are_refused() -> None:
    with pytest.raises(ConfigError, match="--mqtt-port needs MQTT switched on; add --mqtt-host"):
        apply_overrides(cfg.Config(), mqtt_port=1884)
    assert apply_overrides(cfg.Config(), mqtt_host="b", mqtt_port=1884).mqtt.port == 1884


def test_systemd_time_spans() -> None:
    spans = {"30s": 30.0, "1min 30s": 90.0, "500ms": 0.5, "2h": 7200.0, "0": 0.0,
             "30000000": 30.0, "infinity": float("inf"), "": None, "soon": None, "30 s": None}
    assert {text: parse_timespan(text) for text in spans} == spans


def test_check_config_reads_the_installed_units_watchdog() -> None:
    def systemctl(out: str, rc: int = 0) -> Callable[..., subprocess.CompletedProcess[str]]:
        def run(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
            assert args[:2] == ["systemctl", "show"] and "edge-classify.service" in args
            return subprocess.CompletedProcess(args, rc, stdout=out, stderr="")
        return run

    # `systemctl show` output as systemd prints it (this machine may have no systemd).
    loaded = unit_watchdog(systemctl("LoadState=loaded\nWatchdogUSec=2min\n"))
    assert loaded == (120.0, "WatchdogSec of the installed edge-classify.service")
    assert unit_watchdog(systemctl("WatchdogUSec=0\nLoadState=loaded\n"))[0] is None
    shipped = (30.0, "WatchdogSec of systemd/edge-classify.service")
    assert unit_watchdog(systemctl("LoadState=not-found\nWatchdogUSec=0\n")) == shipped
    assert unit_watchdog(systemctl("", rc=1)) == shipped

    def missing(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError("systemctl")

    assert unit_watchdog(missing) == shipped


def test_check_config_command(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(cli, ["check-config", str(EXAMPLE)])
    assert ok.exit_code == 0, ok.output
    assert "valid" in ok.output and "web:     http://127.0.0.1:8080/" in ok.output
    bad = runner.invoke(cli, ["check-config", str(write(tmp_path, "[mqtt]\nqos = 9"))])
    assert bad.exit_code == 1
    assert "Traceback" not in bad.output and "choose one of: 0, 1, 2" in bad.output
    assert len(bad.output.strip().splitlines()) == 1
    missing = write(tmp_path, f"[mqtt]\nenabled = true\nusername = 'u'\n"
                              f"password_file = '{tmp_path / 'pw'}'\n")
    result = runner.invoke(cli, ["check-config", str(missing)])
    assert result.exit_code == 1 and "problem: [mqtt] password_file" in result.output
    # What `run` would refuse at start, refused here.
    for text, part in (("[mqtt]\nenabled = true\nprefix = ''", "[mqtt] prefix"),
                       ("[web]\nenabled = true\nbind = '0.0.0.0:8080'", "[web] bind"),
                       ("[service]\nstall_after = 45.0", "[service] stall_after = 45")):
        refused = runner.invoke(cli, ["check-config", str(write(tmp_path, text))])
        assert refused.exit_code == 1 and "Traceback" not in refused.output, refused.output
        assert part in refused.output and "valid" not in refused.output
        assert len(refused.output.strip().splitlines()) == 1


@pytest.mark.parametrize("text, message", [
    ("[pipeline]\nmax_fps = nan\n", r"\[pipeline\] max_fps = nan must be a finite number"),
    ("[mqtt]\ninterval = inf\n", r"\[mqtt\] interval = inf must be a finite number"),
    ("[source]\nuri = 'rtsp://'\n", r"\[source\] uri: bad source URI 'rtsp://' \(no host\)"),
    ("[source]\nuri = 'foo://cam'\n", r"\[source\] uri: unknown source scheme 'foo://'"),
    ("[source]\nuri = 'csi://x'\n", r"\[source\] uri: bad CSI camera 'csi://x'; expected csi://N"),
    ("[source]\nuri = ''\n", r"\[source\] uri: empty source"),
    ("[source]\nuri = 'test://?fps=0'\n", r"\[source\] uri: bad test:// source .*fps must be within"),
    ("[source]\nuri = 'test://?size=99999x1'\n", r"\[source\] uri: bad test:// source .*at most 8192"),
    ("[source]\nuri = 'test://?bogus=1'\n", r"\[source\] uri: bad test:// source .*unknown option bogus"),
    ("[source]\nuri = 'v4l2://x'\n", r"\[source\] uri: bad camera 'v4l2://x'; expected N"),
    ("[model]\nname = 'resnet'\n", r"\[model\] name = 'resnet' is no zoo model; choose one of: squeez"),
])
def test_values_the_service_would_fail_on_are_refused_when_loading(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        cfg.load(write(tmp_path, text))
    result = CliRunner().invoke(cli, ["run", "--config", str(write(tmp_path, text))])
    assert result.exit_code == EX_CONFIG, result.output  # systemd does not restart into it


def test_a_camera_or_model_file_that_is_not_there_yet_is_not_a_config_error(tmp_path: Path) -> None:
    config = cfg.load(write(tmp_path, "[source]\nuri = 'rtsp://cam.lan/live'\n[model]\n"
                                      "name = '/opt/models/own.tflite'\n"))
    assert config.model.name == "/opt/models/own.tflite"


def test_a_byte_order_mark_is_read_past(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes("\ufeff[pipeline]\nmax_frames = 7\n".encode())
    assert cfg.load(path).pipeline.max_frames == 7


def test_a_config_path_that_is_no_file_is_a_one_line_config_error(tmp_path: Path) -> None:
    folder = tmp_path / "config.toml"
    folder.mkdir()
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)  # reading it would block the start for ever
    for path in (folder, fifo, Path("/dev/zero")):
        result = CliRunner().invoke(cli, ["run", "--config", str(path)])
        assert result.exit_code == EX_CONFIG, result.output
        assert result.output == f"Error: config file {path} is not a regular file; give a TOML file\n"


def test_a_config_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nests arrays or tables too deeply"):
        cfg.load(path)


def test_a_secret_file_others_can_read_is_used_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from edge_sdk.secrets import read_secret

    secret = tmp_path / "token.txt"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    with caplog.at_level("WARNING", logger="edge_sdk.secrets"):
        assert read_secret(secret, "the web token_file") == "s3cret"
    assert not caplog.records
    secret.chmod(0o644)
    with caplog.at_level("WARNING", logger="edge_sdk.secrets"):
        assert read_secret(secret, "the web token_file") == "s3cret"
    assert [r.getMessage() for r in caplog.records] == [
        f"the web token_file {str(secret)!r} can be read by other users (mode 0644); chmod 600 it"
    ]


@pytest.mark.parametrize(("text", "expected"), [
    ("", "is empty; write the secret on its first line"),
    ("\n\n", "is empty; write the secret on its first line"),
    ("\ns3cret\n", "has an empty first line; write the secret on its first line (the rest"),
])
def test_a_secret_file_without_a_first_line_says_which_fix(tmp_path: Path, text: str, expected: str) -> None:
    from edge_sdk.secrets import read_secret

    secret = tmp_path / "token.txt"
    secret.write_text(text)
    secret.chmod(0o600)
    with pytest.raises(ConfigError, match=re.escape(expected)):
        read_secret(secret, "the web token_file")


@pytest.mark.parametrize("host", ["mqtt://broker.lan:1883", "broker.lan:1883", "[::1]", "a b"])
def test_a_broker_host_given_as_a_url_or_with_its_port_is_refused(tmp_path: Path, host: str) -> None:
    with pytest.raises(ConfigError, match=r"\[mqtt\] host .* must be the broker's host name or IP "
                                          r"address only"):
        cfg.load(write(tmp_path, f"[mqtt]\nenabled = true\nhost = {host!r}\n"))
    with pytest.raises(ConfigError, match=r"command line: \[mqtt\] host"):
        apply_overrides(cfg.Config(), mqtt_host=host)
    assert cfg.load(write(tmp_path, "[mqtt]\nhost = '::1'\n")).mqtt.host == "::1"


def test_a_toml_date_where_a_number_goes_is_shown_as_written(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[pipeline\] max_fps = 1979-05-27 must be a finite number"):
        cfg.load(write(tmp_path, "[pipeline]\nmax_fps = 1979-05-27\n"))


@pytest.mark.parametrize("text, message", [
    ("path = 5", r"\[sinks.video\] path = 5 must be a string"),
    ("path = 'x.avi'\nfps = '30'", r"\[sinks.video\] fps = \"30\" must be a finite number"),
    ("path = 'x.avi'\nfps = true", r"\[sinks.video\] fps = true must be a finite number"),
    ("path = 'x.avi'\ncodec = 3", r"\[sinks.video\] codec = 3 must be a string"),
])
def test_sink_table_values_are_checked_against_the_sinks_annotations(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        cfg.load(write(tmp_path, f"[sinks.video]\n{text}\n"))
    config = cfg.load(write(tmp_path, "[sinks.video]\npath = 'x.avi'\nfps = 30\ncodec = 'MJPG'\n"))
    assert config.sinks["video"] == {"path": "x.avi", "fps": 30, "codec": "MJPG"}
