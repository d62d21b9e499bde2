"""The service config: TOML into frozen dataclasses, strict keys, errors that name the fix."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomllib
from click.testing import CliRunner

from edge_sdk import config as cfg
from edge_sdk import registry
from edge_sdk.cli.main import cli
from edge_sdk.errors import ConfigError
from edge_sdk.service.runner import mqtt_options, web_options

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
            assert data[table][f.name] == f.default, f"[{table}] {f.name}"
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
        ("[mqtt]\ndevice_id = 'a/b'", ["[mqtt] device_id = 'a/b' must not contain"]),
        ("[web]\nbind = '8080'", ["[web] bind = '8080' must be ADDRESS:PORT"]),
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
