"""MQTT sink against a real Mosquitto started by the suite on a free loopback port."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from support.mosquitto import (
    Mosquitto,
    Recorder,
    free_port,
    make_client_cert,
    make_tls,
    mosquitto,
    retained,
)
from support.privileges import python_without_root_override
from support.service_proc import ServiceProcess

from edge_sdk.errors import ConfigError, SinkError
from edge_sdk.mqtt_discovery import (
    ATTRIBUTES_TEMPLATE,
    LABEL_TEMPLATE,
    SCORE_TEMPLATE,
    discovery_messages,
    node_id,
)
from edge_sdk.sinks.mqtt import MqttSink, check_broker_host
from edge_sdk.sinks.mqtt_policy import PublishPolicy
from edge_sdk.types import PREDICTION_SCHEMA_VERSION, Label, Prediction, Timings, utc_ms

__all__ = ["mosquitto"]  # the fixture, imported for pytest

FAST: dict[str, Any] = {"reconnect_min": 0.1, "reconnect_max": 0.5}


def prediction(i: int, label: str = "tabby", model: str = "squeezenet1.1") -> Prediction:
    top = (Label(281, label, 0.875), Label(282, "tiger cat", 0.0625))
    return Prediction(i, 1_000 + i, top, Timings(0.1, 1.5, 6.25, 0.2, 9.0), model)


def frames_of(rec: Recorder, topic: str) -> list[int]:
    return [m["frame"] for m in rec.json(topic)]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_predictions_arrive_with_the_documented_schema(mosquitto: Mosquitto, protocol: str) -> None:
    rec = Recorder(mosquitto, ["edge-sdk/#"])
    sink = MqttSink(host=mosquitto.host, port=mosquitto.port, device_id="cam1", discovery=False,
                    protocol=protocol)
    try:
        assert sink.wait_connected(5)
        for i in range(200):
            sink.publish(prediction(i), None)
        assert sink.flush(10)
        topic = "edge-sdk/cam1/prediction"
        assert rec.wait_for(lambda m: len([t for t, _, _ in m if t == topic]) == 200)
        assert frames_of(rec, topic) == list(range(200))
        first = rec.json(topic)[0]
        assert set(first) == {"v", "frame", "ts_ns", "model", "top", "timings_ms"}
        assert first["v"] == PREDICTION_SCHEMA_VERSION
        assert first["top"][0] == {"index": 281, "label": "tabby", "score": 0.875}
        assert set(first["timings_ms"]) == {
            "capture_wait", "preprocess", "inference", "postprocess", "age"
        }
        assert Prediction.from_dict(first) == prediction(0)
        assert sink.stats()["published"] == 200 and sink.queue_depth == 0
    finally:
        sink.close()
        rec.close()
    assert retained(mosquitto, "edge-sdk/cam1/status") == b"offline"


def test_status_is_retained_online_while_running(mosquitto: Mosquitto) -> None:
    with MqttSink(host=mosquitto.host, port=mosquitto.port, device_id="cam2", prefix="home/vision",
                  discovery=False) as sink:
        assert sink.wait_connected(5)
        assert sink.flush(5)
        assert retained(mosquitto, "home/vision/cam2/status") == b"online"
    assert retained(mosquitto, "home/vision/cam2/status") == b"offline"


@pytest.mark.slow
def test_qos1_predictions_during_a_broker_outage_all_arrive(tmp_path: Path) -> None:
    """Broker down for 5 s mid-run: every prediction accepted meanwhile arrives, no gaps."""
    broker = Mosquitto(tmp_path, persistence=True)
    broker.start()
    topic = "edge-sdk/cam3/prediction"
    # A persistent session: the broker keeps queueing for the recorder across its own restart,
    # so what the recorder misses can only be the sink's fault.
    rec = Recorder(broker, [topic], session="recorder-cam3")
    sink = MqttSink(host=broker.host, port=broker.port, device_id="cam3", discovery=False,
                    queue_size=2000, **FAST)
    stop = threading.Event()
    sent: list[int] = []

    def produce() -> None:  # ~100 predictions/s, like a camera pipeline
        i = 0
        while not stop.is_set() and i < 5000:
            sink.publish(prediction(i), None)
            sent.append(i)
            i += 1
            stop.wait(0.01)

    producer = threading.Thread(target=produce)
    before = rec
    after: Recorder | None = None
    try:
        assert sink.wait_connected(5)
        producer.start()
        assert rec.wait_for(lambda m: len(m) >= 50)
        rec.close()
        broker.stop()
        time.sleep(5)  # the outage itself: nothing to wait for
        during = sink.stats()
        assert not during["connected"] and during["queue_depth"] > 300
        broker.start()
        after = Recorder(broker, [topic], session="recorder-cam3")
        assert sink.wait_connected(10)
        resumed = len(sent) + 50
        assert after.wait_for(lambda m: len(m) > 0 and json.loads(m[-1][1])["frame"] >= resumed,
                              timeout=20)
        stop.set()
        producer.join()
        assert sink.flush(10)
        n = len(sent)
        assert after.wait_for(lambda m: json.loads(m[-1][1])["frame"] == n - 1)
        got = frames_of(before, topic) + frames_of(after, topic)
        missing = sorted(set(range(n)) - set(got))
        assert not missing, f"{len(missing)} missing frames, first {missing[:20]}"
        stats = sink.stats()
        assert stats["overflow"] == 0 and stats["published"] == n and stats["connects"] >= 2
    finally:
        stop.set()
        if producer.is_alive():
            producer.join()
        sink.close()
        if after is not None:
            after.close()
        broker.stop()


def test_qos2_predictions_arrive_exactly_once_across_an_outage(tmp_path: Path) -> None:
    """Half the predictions are made while the broker is down, half after it is back."""
    broker = Mosquitto(tmp_path, persistence=True)
    broker.start()
    topic = "edge-sdk/cam14/prediction"
    # A persistent QoS 2 session that the broker fills while the recorder is away, so the
    # recorder's own connection cannot lose or repeat a message.
    Recorder(broker, [topic], session="recorder-cam14", qos=2).close()
    broker.stop()
    sink = MqttSink(host=broker.host, port=broker.port, device_id="cam14", qos=2,
                    discovery=False, **FAST)
    rec: Recorder | None = None
    try:
        for i in range(50):
            sink.publish(prediction(i), None)
        assert not sink.connected and sink.queue_depth == 50
        broker.start()
        assert sink.wait_connected(10)
        for i in range(50, 100):
            sink.publish(prediction(i), None)
        assert sink.flush(10)
        assert sink.stats()["published"] == 100 and sink.queue_depth == 0
        rec = Recorder(broker, [topic], session="recorder-cam14", qos=2)
        assert rec.wait_for(lambda m: len(m) >= 100), frames_of(rec, topic)
        time.sleep(0.3)  # a duplicate would come right behind; nothing else to wait on
        assert frames_of(rec, topic) == list(range(100))
        # The broker saw each prediction once, as QoS 2, and finished each handshake (PUBREL).
        log = list(broker.log)
        received = [ln for ln in log if "Received PUBLISH from edge-sdk-cam14" in ln and topic in ln]
        assert len(received) == 100 and all(" q2," in ln for ln in received)
        assert sum("Received PUBREL from edge-sdk-cam14" in ln for ln in log) == 100
        # paho sends all it holds at once after a reconnect; past mosquitto's quota (20) the
        # broker would answer PUBREC 0x97 and drop the message, unseen by an MQTT 3.1.1 client.
        assert not [ln for ln in log if "Sending PUBREC to edge-sdk-cam14" in ln and "rc0" not in ln]
    finally:
        sink.close()
        if rec is not None:
            rec.close()
        broker.stop()


def test_queue_overflow_is_counted_logged_and_the_rest_delivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = Mosquitto(tmp_path)  # not started yet: the sink starts disconnected
    caplog.set_level(logging.INFO, "edge_sdk.mqtt")
    sink = MqttSink(host=broker.host, port=broker.port, device_id="cam4", discovery=False,
                    queue_size=5, **FAST)
    try:
        for i in range(8):
            sink.publish(prediction(i), None)
        assert sink.overflow == 3 and sink.queue_depth == 5
        assert "queue full (5 predictions waiting for " in caplog.text
        assert "; 1 prediction overflowed so far; raise [mqtt] queue_size" in caplog.text
        broker.start()
        rec = Recorder(broker, ["edge-sdk/cam4/prediction"])
        # The recorder may subscribe after the backlog went out; publish one more to be sure
        # the connection works, and check the counters for the backlog.
        assert sink.wait_connected(10)
        # The reconnect line says what the outage cost, not only the close summary.
        assert "(3 predictions overflowed meanwhile; raise [mqtt] queue_size to ride out such " \
               "an outage); 5 predictions queued" in caplog.text
        assert sink.flush(10)
        sink.publish(prediction(8), None)
        assert sink.flush(5)
        assert rec.wait_for(lambda m: len(m) >= 1)
        assert sink.stats()["published"] == 6
        rec.close()
    finally:
        sink.close()
        broker.stop()


@pytest.mark.slow
def test_a_prediction_too_big_for_mqtt_is_dropped_logged_and_not_left_pending(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """A payload over MQTT's 256 MiB limit cannot be sent at all (making one takes ~1 GB)."""
    caplog.set_level(logging.WARNING, "edge_sdk.mqtt")
    rec = Recorder(mosquitto, ["edge-sdk/cam13/prediction"])
    with MqttSink(host=mosquitto.host, port=mosquitto.port, device_id="cam13",
                  discovery=False) as sink:
        assert sink.wait_connected(5)
        sink.publish(prediction(0, label="x" * (256 << 20)), None)
        sink.publish(prediction(1), None)
        assert sink.flush(5)
        assert rec.wait_for(lambda m: len(m) == 1)
        assert frames_of(rec, "edge-sdk/cam13/prediction") == [1]
        stats = sink.stats()
        assert (stats["dropped"], stats["accepted"], stats["published"]) == (1, 1, 1)
        assert stats["queue_depth"] == 0
    rec.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "cannot send prediction 0" in errors[0], errors
    assert "\n" not in errors[0]


def test_wrong_password_logs_one_line_and_keeps_retrying(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = Mosquitto(tmp_path, users={"camera": "s3cret"})
    broker.start()
    bad = tmp_path / "bad-password"
    bad.write_text("wrong\n")
    caplog.set_level(logging.DEBUG, "edge_sdk.mqtt")
    sink = MqttSink(host=broker.host, port=broker.port, device_id="cam5", username="camera",
                    password_file=str(bad), **FAST)
    try:
        deadline = time.monotonic() + 10
        while sink.connect_failures < 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a counter paho's thread bumps; no event to wait on
        assert sink.connect_failures >= 3 and not sink.connected
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        message = errors[0].getMessage()
        assert "\n" not in message and "refused" in message and "password_file" in message
        assert errors[0].exc_info is None
        sink.publish(prediction(0), None)  # still accepted, waiting for a good login
        assert sink.queue_depth == 1
    finally:
        sink.close()
        broker.stop()


def _warnings_until(sink: MqttSink, caplog: pytest.LogCaptureFixture, failures: int) -> list[str]:
    deadline = time.monotonic() + 15
    while sink.connect_failures < failures and time.monotonic() < deadline:
        time.sleep(0.05)  # polling a counter paho's thread bumps; no event to wait on
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "cannot reach" in r.getMessage()]


def test_an_unreachable_broker_is_logged_once_with_the_reason(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "edge_sdk.mqtt")
    cases: list[tuple[dict[str, Any], str]] = [
        # paho says nothing but "connection failed" for any of these.
        ({"host": "no-such-host.invalid"}, "cannot resolve the host name 'no-such-host.invalid'"),
        ({"host": "127.0.0.1", "port": free_port()}, "is the broker running and listening on port"),
        ({"host": mosquitto.host, "port": mosquitto.port, "tls": True},
         f"port {mosquitto.port} accepts connections but not TLS"),
    ]
    for options, reason in cases:
        caplog.clear()
        sink = MqttSink(device_id="cam-reach", discovery=False, close_timeout=0, **options, **FAST)
        try:
            lines = _warnings_until(sink, caplog, 3)
        finally:
            sink.close()
        assert len(lines) == 1 and reason in lines[0], lines  # one line per outage, not per retry


def test_right_password_from_a_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = Mosquitto(tmp_path, users={"camera": "s3cret"})
    broker.start()
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "mqtt-password").write_text("s3cret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    try:
        with MqttSink(host=broker.host, port=broker.port, device_id="cam6", username="camera",
                      discovery=False, **FAST) as sink:
            assert sink.wait_connected(5)
    finally:
        broker.stop()


def test_tls_with_a_self_signed_ca(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    broker = Mosquitto(tmp_path, tls=tls)
    broker.start()
    try:
        rec = Recorder(broker, ["edge-sdk/cam7/prediction"], ca_file=tls.ca_file)
        with MqttSink(host="127.0.0.1", port=broker.port, device_id="cam7", ca_file=str(tls.ca_file),
                      discovery=False, **FAST) as sink:
            assert sink.tls and sink.wait_connected(10)
            sink.publish(prediction(1), None)
            assert rec.wait_for(lambda m: len(m) == 1)
        rec.close()
        # The system's CAs do not know ours: the sink must refuse the broker, and keep trying.
        with MqttSink(host="127.0.0.1", port=broker.port, device_id="cam7b", tls=True,
                      discovery=False, **FAST) as untrusting:
            assert not untrusting.wait_connected(1.0)
            assert untrusting.connect_failures >= 1
    finally:
        broker.stop()


def test_tls_client_certificate_a_broker_requires(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tls = make_tls(tmp_path / "tls")
    cert = make_client_cert(tls)
    stranger = make_client_cert(make_tls(tmp_path / "other-ca"), "stranger")
    broker = Mosquitto(tmp_path, tls=tls, require_certificate=True)
    broker.start()
    caplog.set_level(logging.DEBUG, "edge_sdk.mqtt")

    def refused(device_id: str, **files: Any) -> str:
        """Connect with `files`; return the one ERROR line the refusals logged."""
        caplog.clear()
        sink = MqttSink(host="127.0.0.1", port=broker.port, device_id=device_id,
                        ca_file=str(tls.ca_file), discovery=False, **files, **FAST)
        try:
            deadline = time.monotonic() + 10
            while sink.connect_failures < 3 and time.monotonic() < deadline:
                time.sleep(0.05)  # polling a counter paho's thread bumps; no event to wait on
            # Still retrying (paho's thread is alive), never connected, and publish still works.
            assert sink.connect_failures >= 3 and not sink.connected
            sink.publish(prediction(2), None)
            assert sink.queue_depth == 1
        finally:
            sink.close()
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        assert errors[0].exc_info is None and "\n" not in errors[0].getMessage()
        return errors[0].getMessage()

    try:
        rec = Recorder(broker, ["edge-sdk/cam15/prediction"], ca_file=tls.ca_file, client_cert=cert)
        with MqttSink(host="127.0.0.1", port=broker.port, device_id="cam15",
                      ca_file=str(tls.ca_file), certfile=str(cert.cert_file),
                      keyfile=str(cert.key_file), discovery=False, **FAST) as sink:
            assert sink.wait_connected(10)
            sink.publish(prediction(1), None)
            assert rec.wait_for(lambda m: len(m) == 1)
        rec.close()
        assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

        message = refused("cam15b")
        assert "refused the TLS connection" in message and "certificate required" in message
        assert "certfile" in message
        message = refused("cam15c", certfile=str(stranger.cert_file),
                          keyfile=str(stranger.key_file))
        assert "refused the TLS connection" in message and "unknown ca" in message
    finally:
        broker.stop()


def test_discovery_configs_are_retained_and_tied_to_the_status(mosquitto: Mosquitto) -> None:
    with MqttSink(host=mosquitto.host, port=mosquitto.port, device_id="shelf-cam") as sink:
        assert sink.wait_connected(5)
        assert sink.flush(5)
    raw = retained(mosquitto, "homeassistant/sensor/shelf-cam/label/config")
    assert raw is not None
    config = json.loads(raw)
    assert config["state_topic"] == "edge-sdk/shelf-cam/prediction"
    assert config["availability_topic"] == "edge-sdk/shelf-cam/status"
    assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
    assert retained(mosquitto, "homeassistant/sensor/shelf-cam/score/config") is not None


def test_discovery_names_the_model_once_the_first_prediction_tells_it(mosquitto: Mosquitto) -> None:
    topic = "homeassistant/sensor/cam11/label/config"
    with MqttSink(host=mosquitto.host, port=mosquitto.port, device_id="cam11") as sink:
        assert sink.wait_connected(5) and sink.flush(5)
        assert json.loads(retained(mosquitto, topic) or b"{}")["device"]["model"] == "image classifier"
        sink.publish(prediction(0, model="mobilenet-v2-quant"), None)
        assert sink.flush(5)
        assert json.loads(retained(mosquitto, topic) or b"{}")["device"]["model"] == "mobilenet-v2-quant"


def test_qos0_publishes_and_flush_still_returns(mosquitto: Mosquitto) -> None:
    rec = Recorder(mosquitto, ["edge-sdk/cam12/prediction"])
    with MqttSink(host=mosquitto.host, port=mosquitto.port, device_id="cam12", qos=0) as sink:
        assert sink.wait_connected(5)
        for i in range(50):
            sink.publish(prediction(i, model=f"m{i % 2}"), None)  # model changes re-announce
        assert sink.flush(5)
        assert rec.wait_for(lambda m: len(m) == 50)
        assert sink.stats()["published"] == 50 and sink.queue_depth == 0
    rec.close()


def test_discovery_off_publishes_no_config(mosquitto: Mosquitto) -> None:
    with MqttSink(host=mosquitto.host, port=mosquitto.port, device_id="quiet", discovery=False) as s:
        assert s.wait_connected(5) and s.flush(5)
    assert retained(mosquitto, "homeassistant/sensor/quiet/label/config") is None


# Keys of Home Assistant's MQTT sensor discovery schema (https://www.home-assistant.io/integrations/sensor.mqtt/,
# plus the shared `device` and `origin` blocks of https://www.home-assistant.io/integrations/mqtt/).
HA_SENSOR_KEYS = {
    "availability", "availability_mode", "availability_template", "availability_topic", "device",
    "device_class", "enabled_by_default", "encoding", "entity_category", "entity_picture",
    "expire_after", "force_update", "icon", "json_attributes_template", "json_attributes_topic",
    "last_reset_value_template", "name", "default_entity_id", "options", "origin",
    "payload_available", "payload_not_available", "platform", "qos",
    "suggested_display_precision", "state_class", "state_topic", "unique_id",
    "unit_of_measurement", "value_template",
}
HA_DEVICE_KEYS = {
    "configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model",
    "model_id", "name", "serial_number", "suggested_area", "sw_version", "via_device",
}
HA_ORIGIN_KEYS = {"name", "sw_version", "support_url"}


def test_discovery_payloads_use_only_documented_keys() -> None:
    messages = discovery_messages(device_id="pi.kitchen", prediction_topic="p/t",
                                  status_topic="s/t", model="squeezenet1.1")
    node = node_id("pi.kitchen")
    assert re.fullmatch(r"pi_kitchen_[0-9a-f]{8}", node)
    assert [m.topic for m in messages] == [
        f"homeassistant/sensor/{node}/label/config",
        f"homeassistant/sensor/{node}/score/config",
    ]
    ids = set()
    for m in messages:
        p = m.payload
        assert set(p) <= HA_SENSOR_KEYS, set(p) - HA_SENSOR_KEYS
        assert set(p["device"]) <= HA_DEVICE_KEYS and set(p["origin"]) <= HA_ORIGIN_KEYS
        assert {"name", "unique_id", "state_topic", "availability_topic"} <= set(p)
        assert p["device"]["identifiers"] and p["device"]["model"] == "squeezenet1.1"
        ids.add(p["unique_id"])
        json.loads(m.encode())
    assert len(ids) == 2


def test_discovery_node_ids_differ_for_different_devices() -> None:
    ids = ["cam 1", "cam.1", "cam_1", "кухня", "ванна", " ", "\u200b"]
    nodes = [node_id(i) for i in ids] + [node_id("cam_1", "site-b")]
    assert len(set(nodes)) == len(nodes)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", n) for n in nodes)
    assert node_id("shelf-cam") == "shelf-cam"  # a plain id stays as it was


def test_discovery_templates_render_label_score_and_attributes() -> None:
    """Render the templates with Jinja as Home Assistant does, on a real prediction payload."""
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment()
    env.filters["tojson"] = lambda v: json.dumps(v)  # Home Assistant's to_json / tojson
    value = prediction(7, label="tabby, tabby cat").to_dict()

    def render(template: str, payload: dict[str, Any]) -> str:
        return str(env.from_string(template).render(value_json=payload))

    assert render(LABEL_TEMPLATE, value) == "tabby, tabby cat"
    assert float(render(SCORE_TEMPLATE, value)) == pytest.approx(87.5)
    attributes = json.loads(render(ATTRIBUTES_TEMPLATE, value))
    assert attributes == {"scores": {"tabby, tabby cat": 0.875, "tiger cat": 0.0625},
                          "model": "squeezenet1.1", "frame": 7}
    empty = {**value, "top": []}
    assert render(LABEL_TEMPLATE, empty) == "none"
    assert render(SCORE_TEMPLATE, empty) == "None"  # Home Assistant's MQTT sensor: unknown
    assert json.loads(render(ATTRIBUTES_TEMPLATE, empty))["scores"] == {}
    cranes = {**value, "top": [{"index": 134, "label": "crane", "score": 0.5},
                               {"index": 517, "label": "crane", "score": 0.3}]}
    assert json.loads(render(ATTRIBUTES_TEMPLATE, cranes))["scores"] == {"crane": 0.5,
                                                                          "crane #517": 0.3}


def test_policy_every_prediction_by_default() -> None:
    policy = PublishPolicy()
    assert all(policy.decide(label, t) for t, label in enumerate("aabba"))


def test_policy_on_change_with_hysteresis_and_minimum_interval() -> None:
    policy = PublishPolicy(on_change=True, hysteresis=3, min_interval=1.0)
    labels = "aaab" + "a" * 3 + "bbb" + "b" * 5 + "a"
    times = [i * 0.25 for i in range(len(labels))]
    chosen = [i for i, (label, t) in enumerate(zip(labels, times, strict=True)) if policy.decide(label, t)]
    # index 2: 'a' stable; the lone 'b' (3) is a flicker; 'b' is stable at 9 and 1.0 s have passed
    assert chosen == [2, 9]


def test_policy_holds_a_change_until_min_interval_then_publishes_it() -> None:
    policy = PublishPolicy(on_change=True, hysteresis=1, min_interval=10.0)
    assert policy.decide("a", 0.0)
    assert not policy.decide("b", 1.0)  # too soon
    assert not policy.decide("b", 9.0)
    assert policy.decide("b", 10.5)
    assert not policy.decide("b", 30.0)  # no change, no heartbeat


def test_policy_publishes_again_a_change_the_sink_could_not_send() -> None:
    policy = PublishPolicy(on_change=True, hysteresis=1, min_interval=0.0)
    assert policy.decide("a", 0.0)
    assert policy.decide("b", 1.0)
    policy.not_sent()  # the queue was full, or QoS 0 while the broker was away
    assert policy.decide("b", 2.0)  # the consumer still shows 'a': 'b' is still the change
    assert not policy.decide("b", 3.0)


def test_an_on_change_label_dropped_while_disconnected_is_sent_after_the_reconnect(
    tmp_path: Path,
) -> None:
    broker = Mosquitto(tmp_path)
    broker.start()
    sink = MqttSink(host=broker.host, port=broker.port, device_id="cam22", qos=0, discovery=False,
                    on_change=True, hysteresis=1, min_interval=0.0, reconnect_min=0.1,
                    reconnect_max=0.2)
    rec = None
    try:
        assert sink.wait_connected(10)
        rec = Recorder(broker, ["edge-sdk/cam22/prediction"])
        sink.publish(prediction(0, label="cat"), None)
        assert rec.wait_for(lambda m: len(m) == 1)
        rec.close()
        broker.stop()
        deadline = time.monotonic() + 5
        while sink.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        for i in range(1, 6):  # QoS 0, disconnected: the change is dropped, and counted once
            sink.publish(prediction(i, label="dog"), None)
        assert sink.stats()["dropped"] == 1
        broker.start()
        rec = Recorder(broker, ["edge-sdk/cam22/prediction"])
        assert sink.wait_connected(10)
        for i in range(6, 9):  # steady 'dog': the consumer must learn it once
            sink.publish(prediction(i, label="dog"), None)
        assert rec.wait_for(lambda m: len(m) >= 1)
        time.sleep(0.3)
        assert [json.loads(p)["top"][0]["label"] for _, p, _ in rec.messages] == ["dog"]
    finally:
        sink.close()
        if rec is not None:
            rec.close()
        broker.stop()


def test_policy_interval_heartbeat_alone_and_with_changes() -> None:
    beat = PublishPolicy(interval=5.0)
    assert [t for t in range(0, 16) if beat.decide("a", float(t))] == [0, 5, 10, 15]
    both = PublishPolicy(on_change=True, hysteresis=1, min_interval=0.0, interval=5.0)
    assert [t for t, lb in enumerate("aabaaaaaaaaa") if both.decide(lb, float(t))] == [0, 2, 3, 8]


def test_policy_never_publishes_a_flicker_as_the_held_back_change() -> None:
    policy = PublishPolicy(on_change=True, hysteresis=3, min_interval=1.0)
    frames = [(i * 0.25, label) for i, label in enumerate("aaabbb")]  # 'b' stable at 1.25 s
    frames += [(1.5, "c"), (1.75, "b"), (2.0, "b"), (3.5, "b")]  # 1.5 s: min_interval is over
    chosen = [(t, label) for t, label in frames if policy.decide(label, t)]
    # The lone 'c' is due by the clock but is not the stable label: the change goes out with
    # the next 'b', once, and nothing follows while 'b' holds.
    assert chosen == [(0.5, "a"), (1.75, "b")]


def test_policy_held_back_change_that_reverts_is_not_published() -> None:
    policy = PublishPolicy(on_change=True, hysteresis=2, min_interval=1.0)
    frames = [(0.0, "a"), (0.1, "a"), (0.2, "b"), (0.3, "b"), (1.2, "a"), (1.3, "a"), (2.5, "a")]
    # 'b' was stable only while min_interval held it back; by the time it may go, 'a' is back.
    assert [t for t, label in frames if policy.decide(label, t)] == [0.1]


def test_policy_heartbeat_on_a_flicker_frame_does_not_fake_a_change() -> None:
    policy = PublishPolicy(on_change=True, hysteresis=3, min_interval=0.0, interval=5.0)
    labels = "aaaaabaaaaaa"  # 'b' at t=5 is a lone frame that the heartbeat happens to carry
    chosen = [t for t, label in enumerate(labels) if policy.decide(label, float(t))]
    # 'a' at 6 is no change, as 'b' never was the state; 'a' becoming stable at 2 repeats
    # nothing either: the first heartbeat already showed it.
    assert chosen == [0, 5, 10]
    startup = PublishPolicy(on_change=True, hysteresis=3, min_interval=0.0, interval=5.0)
    # A label that was never stable is not the state: 'a' becoming stable at 3 is a change.
    assert [t for t, label in enumerate("caaa") if startup.decide(label, float(t))] == [0, 3]


def test_on_change_mode_publishes_only_changes(mosquitto: Mosquitto) -> None:
    rec = Recorder(mosquitto, ["edge-sdk/cam8/prediction"])
    with MqttSink(host=mosquitto.host, port=mosquitto.port, device_id="cam8", discovery=False,
                  on_change=True, hysteresis=2, min_interval=0.0) as sink:
        assert sink.wait_connected(5)
        for i, label in enumerate("aaaaabbbbba"):
            sink.publish(prediction(i, label=label), None)
        assert sink.flush(5)
        assert rec.wait_for(lambda m: len(m) == 2)
    assert frames_of(rec, "edge-sdk/cam8/prediction") == [1, 6]
    rec.close()


def test_gauges_registered_through_attach(mosquitto: Mosquitto) -> None:
    gauges: dict[str, Any] = {}

    class Metrics:
        def register_gauge(self, name: str, fn: Any) -> None:
            gauges[name] = fn

    class PipelineLike:
        metrics = Metrics()

    with MqttSink(host=mosquitto.host, port=mosquitto.port, device_id="cam9", discovery=False) as s:
        s.attach(PipelineLike())
        assert s.wait_connected(5)
        s.publish(prediction(0), None)
        assert s.flush(5)
        assert {k: fn() for k, fn in gauges.items()} == {
            "mqtt_queue_depth": 0.0, "mqtt_overflow_total": 0.0, "mqtt_dropped_total": 0.0,
            "mqtt_published_total": 1.0, "mqtt_connected": 1.0,
        }


@pytest.mark.parametrize(
    "options, error",
    [
        ({"qos": 3}, "qos must be 0, 1 or 2"),
        ({"device_id": "a/b"}, "device_id"),
        ({"prefix": "x/#"}, "prefix"),
        ({"queue_size": 0}, "queue_size"),
        ({"keyfile": "k.pem"}, "keyfile needs certfile"),
        ({"reconnect_min": 5.0, "reconnect_max": 1.0}, "reconnect_min"),
        ({"device_id": "a\tb"}, "control characters"),
        ({"device_id": "x" * 70_000}, "device_id is 70000 characters long; keep it under 256"),
        ({"prefix": "trail/"}, "prefix 'trail/' has an empty topic level"),
        ({"discovery_prefix": "ha//x"}, "has an empty topic level"),
        ({"keepalive": 65536}, "keepalive must be within"),
        ({"host": "a..b"}, "not a valid host name: each dot-separated part must be 1-63"),
        ({"protocol": "3"}, "protocol must be one of '5', '3.1.1'"),
        ({"prefix": "$SYS"}, "must not start with '\\$': such topics belong to the broker"),
        ({"host": "x" * 64 + ".lan"}, "not a valid host name"),
    ],
)
def test_bad_options_are_value_errors(options: dict[str, Any], error: str) -> None:
    # Each of these used to pass and then kill paho's network thread, or make the broker drop
    # every connection, with no word from the sink.
    with pytest.raises(ValueError, match=error):
        MqttSink(**{"host": "127.0.0.1", "port": free_port(), **options})


@pytest.mark.parametrize("option", ["tls", "on_change", "discovery"])
def test_a_flag_given_as_a_string_is_a_type_error(option: str) -> None:
    with pytest.raises(TypeError, match=f"{option} must be True or False, got 'false'"):
        options: dict[str, Any] = {option: "false"}  # the point: not a bool
        MqttSink(host="127.0.0.1", port=free_port(), **options)


@pytest.mark.parametrize(
    "host, hint",
    [
        ("mqtt://broker:1883", "host='broker', port=1883"),
        ("mqtts://broker.lan", "host='broker.lan', tls=True"),
        ("broker:1883", "host='broker', port=1883"),
        ("[::1]:1883", "host='::1', port=1883"),
        ("[::1", "host name or IP address only:"),
        ("a b", "host name or IP address only:"),
        ("camera@broker", "host='broker', username='camera'"),
        ("", "e.g. 'localhost'"),
    ],
)
def test_a_host_that_is_a_url_or_has_a_port_is_refused(host: str, hint: str) -> None:
    with pytest.raises(ValueError, match=r"the port goes in port=") if host else pytest.raises(ValueError):
        check_broker_host(host)
    with pytest.raises(ValueError) as refused:
        MqttSink(host=host)
    assert hint in str(refused.value)


@pytest.mark.parametrize("host", ["localhost", "broker.lan", "my_broker", "10.0.0.5", "::1",
                                  "fe80::1%eth0", "2001:db8::17"])
def test_host_names_and_addresses_including_ipv6_pass(host: str) -> None:
    check_broker_host(host)


@pytest.mark.parametrize(
    "options, error",
    [
        ({"port": "1883"}, "port must be an integer"),
        ({"host": 5}, "host must be a string"),
        ({"qos": "1"}, "qos must be an integer"),
        ({"qos": True}, "qos must be an integer"),
        ({"keepalive": 30.0}, "keepalive must be an integer"),
        ({"queue_size": "10"}, "queue_size must be an integer"),
        ({"close_timeout": "1"}, "close_timeout must be a number"),
        ({"interval": "60"}, "interval must be a number"),
        ({"username": 7}, "username must be a string"),
        ({"prefix": None}, "prefix must be a string"),
    ],
)
def test_options_of_the_wrong_type_are_type_errors(options: dict[str, Any], error: str) -> None:
    with pytest.raises(TypeError, match=error):
        MqttSink(**options)


@pytest.mark.parametrize("options", [{"reconnect_max": float("inf")}, {"min_interval": float("nan")},
                                     {"close_timeout": -1.0}])
def test_nan_infinite_and_negative_times_are_value_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        MqttSink(**options)


def test_missing_password_file_and_ca_file_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"password_file .* does not exist"):
        MqttSink(host="127.0.0.1", port=free_port(), username="u",
                 password_file=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="ca_file"):
        MqttSink(host="127.0.0.1", port=free_port(), ca_file=str(tmp_path / "ca.pem"))


def test_publish_never_waits_on_a_dead_broker() -> None:
    sink = MqttSink(host="127.0.0.1", port=free_port(), device_id="cam10", queue_size=100, **FAST)
    try:
        start = time.perf_counter()
        for i in range(100):
            sink.publish(prediction(i), None)
        # Generous bound: a network wait would be seconds; this is about not blocking at all.
        assert time.perf_counter() - start < 2.0
        assert sink.queue_depth == 100
    finally:
        start = time.perf_counter()
        sink.close()
        assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("qos", [1, 2])
def test_close_delivers_the_queue_to_a_broker_back_during_pahos_backoff(
    tmp_path: Path, qos: int
) -> None:
    """The broker comes up after the predictions were queued and close() follows at once, while
    paho sleeps in a 5 s reconnect backoff: close()'s own last attempt delivers them all."""
    broker = Mosquitto(tmp_path)
    sink = MqttSink(host=broker.host, port=broker.port, device_id="cam20", qos=qos, discovery=False,
                    reconnect_min=5.0, reconnect_max=5.0, close_timeout=1.5)
    rec: Recorder | None = None
    try:
        deadline = time.monotonic() + 5
        while sink.connect_failures == 0 and time.monotonic() < deadline:
            time.sleep(0.02)  # the first attempt failed: paho now waits 5 s
        for i in range(25):
            sink.publish(prediction(i), None)
        broker.start()
        rec = Recorder(broker, ["edge-sdk/cam20/#"])
        started = time.monotonic()
        sink.close()
        assert time.monotonic() - started < 1.5 + 0.2
        topic = "edge-sdk/cam20/prediction"
        assert rec.wait_for(lambda m: len([t for t, _, _ in m if t == topic]) == 25)
        assert frames_of(rec, topic) == list(range(25))
        stats = sink.stats()
        assert stats["published"] == 25 and stats["dropped"] == 0 and stats["queue_depth"] == 0
        assert retained(broker, "edge-sdk/cam20/status") == b"offline"
    finally:
        sink.close()
        if rec is not None:
            rec.close()
        broker.stop()


def test_predictions_the_broker_refuses_are_dropped_and_logged_not_published(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An ACL that lets the device write its status but not its predictions. Under MQTT 3.1.1
    the broker acknowledged each prediction and threw it away, and the sink counted it
    published; MQTT 5's acknowledgement says "Not authorized"."""
    acl = tmp_path / "acl"
    acl.write_text("user cam\ntopic write edge-sdk/cam23/status\ntopic write homeassistant/#\n")
    broker = Mosquitto(tmp_path, users={"cam": "pw"}, extra=(f"acl_file {acl}",))
    (tmp_path / "pw").write_text("pw\n")
    tmp_path.joinpath("pw").chmod(0o600)
    broker.start()
    caplog.set_level(logging.ERROR, "edge_sdk.sinks.mqtt")
    sink = MqttSink(host=broker.host, port=broker.port, device_id="cam23", username="cam",
                    password_file=str(tmp_path / "pw"))
    try:
        assert sink.wait_connected(10)
        for i in range(5):
            sink.publish(prediction(i), None)
        assert sink.flush(10)
        stats = sink.stats()
        assert (stats["published"], stats["dropped"]) == (0, 5)
        assert ("refused a prediction on edge-sdk/cam23/prediction (Not authorized); allow user "
                "'cam' to publish to edge-sdk/cam23/prediction in the broker's ACL") in caplog.text
    finally:
        sink.close()
        broker.stop()


def test_a_message_over_the_brokers_packet_limit_is_refused_before_it_is_sent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Sent anyway, the broker would drop the connection, and the resend after each reconnect too.
    broker = Mosquitto(tmp_path, extra=("max_packet_size 200",))
    broker.start()
    caplog.set_level(logging.WARNING, "edge_sdk.sinks.mqtt")
    sink = MqttSink(host=broker.host, port=broker.port, device_id="cam24")
    try:
        assert sink.wait_connected(10)
        for i in range(3):
            sink.publish(prediction(i), None)
        assert sink.flush(5)
        time.sleep(0.5)
        stats = sink.stats()
        assert (stats["published"], stats["dropped"], sink.connects) == (0, 3, 1)
        assert "over the broker's maximum packet size of 200" in caplog.text
        assert "homeassistant/sensor/cam24/label/config not sent" in caplog.text
    finally:
        sink.close()
        broker.stop()


def test_two_boards_with_one_device_id_are_told_apart_in_the_log(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """Mosquitto closes the older of two connections with one client id, with no reason given,
    each time the other reconnects: the sinks say what is likely going on."""
    caplog.set_level(logging.WARNING, "edge_sdk.sinks.mqtt")
    options: dict[str, Any] = {"host": mosquitto.host, "port": mosquitto.port, "discovery": False,
                               "device_id": "raspberrypi", "reconnect_min": 0.1, "reconnect_max": 0.2}
    first, second = MqttSink(**options), MqttSink(**options)
    try:
        deadline = time.monotonic() + 20
        while "another client may be using this client id (edge-sdk-raspberrypi)" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text[-2000:]
            time.sleep(0.1)
    finally:
        first.close()
        second.close()


def test_close_with_nothing_queued_still_replaces_a_stale_online(tmp_path: Path) -> None:
    """A broker that crashed and restarted from its last save can hold our retained "online"
    with no connection of ours left for a last will to follow. If close() comes while the sink
    sleeps in a reconnect backoff with nothing queued, it still connects to say offline."""
    broker = Mosquitto(tmp_path)
    broker.start()
    sink = MqttSink(host=broker.host, port=broker.port, device_id="cam21", discovery=False,
                    reconnect_min=5.0, reconnect_max=5.0, close_timeout=1.5)
    try:
        assert sink.wait_connected(10)
        broker.stop()
        deadline = time.monotonic() + 5
        while sink.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        broker.start()
        # What a crash after a save leaves (a clean stop publishes the will instead).
        stale = mqtt.Client(CallbackAPIVersion.VERSION2)
        stale.connect(broker.host, broker.port)
        stale.loop_start()
        stale.publish("edge-sdk/cam21/status", b"online", qos=1, retain=True).wait_for_publish(5)
        stale.disconnect()
        stale.loop_stop()
        assert retained(broker, "edge-sdk/cam21/status") == b"online"
        sink.close()
        assert retained(broker, "edge-sdk/cam21/status") == b"offline"
    finally:
        sink.close()
        broker.stop()


@pytest.mark.parametrize("host", ["127.0.0.1", "10.255.255.1"])  # refused; unroutable (or silent)
def test_close_counts_and_logs_what_it_cannot_deliver_within_close_timeout(
    host: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "edge_sdk.mqtt")
    sink = MqttSink(host=host, port=free_port(), device_id="cam21", discovery=False,
                    close_timeout=0.5, **FAST)
    for i in range(5):
        sink.publish(prediction(i), None)
    started = time.monotonic()
    sink.close()
    assert time.monotonic() - started < 0.5 + 0.2
    stats = sink.stats()
    assert stats["dropped"] == 5 and stats["queue_depth"] == 0 and stats["published"] == 0
    # It never connected: nothing was sent, which is not the same as unacknowledged.
    assert "5 dropped, of which 5 were never sent: the broker" in caplog.text
    assert "was not reached in this run" in caplog.text
    assert sink.closed
    with pytest.raises(SinkError, match="closed; make a new MqttSink"):  # not a silent loss
        sink.publish(prediction(5), None)


def test_close_after_the_broker_went_away_says_not_acknowledged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "edge_sdk.mqtt")
    broker = Mosquitto(tmp_path)
    broker.start()
    sink = MqttSink(host=broker.host, port=broker.port, device_id="cam24", qos=1, discovery=False,
                    reconnect_min=5.0, reconnect_max=5.0, close_timeout=0.5)
    try:
        assert sink.wait_connected(5)
        broker.stop()
        # Closed before paho noticed the end, the sink would have no loss to log: wait for it.
        assert wait_until(lambda: not sink.connected)
        for i in range(3):
            sink.publish(prediction(i), None)
        sink.close()
        assert sink.stats()["dropped"] == 3
        assert "3 dropped, of which 3 were not acknowledged by" in caplog.text
        # paho calls an end without the broker's DISCONNECT "Unspecified error".
        assert "lost (closed by the broker, or the network dropped); " in caplog.text
    finally:
        sink.close()
        broker.stop()


@pytest.mark.parametrize("qos", [1, 2])
def test_a_spool_keeps_what_a_stop_could_not_deliver_for_the_next_start(
    tmp_path: Path, qos: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Stopped while the broker is away (a restart during an outage): the 5 predictions go to
    the spool, not to `dropped`; the next sink on it, with the broker back, sends them first
    and in order, then its own, and removes the spool once all arrived."""
    caplog.set_level(logging.INFO, "edge_sdk.mqtt")
    spool = tmp_path / "mqtt-spool.jsonl"
    broker = Mosquitto(tmp_path)
    options: dict[str, Any] = {"host": broker.host, "port": broker.port, "device_id": "cam25",
                               "qos": qos, "discovery": False, "close_timeout": 0.5,
                               "spool": str(spool), **FAST}
    first = MqttSink(**options)
    for i in range(5):
        first.publish(prediction(i), None)
    first.close()
    assert first.stats()["spooled"] == 5 and first.stats()["dropped"] == 0
    assert f"5 kept in {spool} for the next start" in caplog.text
    assert [json.loads(line)["frame"] for line in spool.read_text().splitlines()] == list(range(5))
    broker.start()
    rec = Recorder(broker, ["edge-sdk/cam25/prediction"])
    second = MqttSink(**options)
    try:
        assert "queued 5 predictions kept in" in caplog.text
        for i in range(5, 8):
            second.publish(prediction(i), None)
        assert second.flush(10)
        topic = "edge-sdk/cam25/prediction"
        assert rec.wait_for(lambda m: len([t for t, _, _ in m if t == topic]) == 8)
        assert frames_of(rec, topic) == list(range(8))
        assert rec.json(topic)[0] == prediction(0).to_dict()  # the very payload kept
    finally:
        second.close()
        rec.close()
        broker.stop()
    assert second.stats()["published"] == 8 and second.stats()["spooled"] == 0
    assert not spool.exists() and not list(tmp_path.glob(".mqtt-spool.jsonl*"))


def test_a_damaged_spool_is_set_aside_not_replaced_and_bad_paths_are_one_line_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "edge_sdk.mqtt")
    spool = tmp_path / "spool.jsonl"
    good = '{"frame": 3, "payload": "{}"}\n'
    spool.write_bytes((good + 'not json\n{"frame": "x", "payload": 1}\n').encode()
                      + b'{"frame": 4, "payload": "\xe9"}\n' + good.encode())
    sink = MqttSink(host="127.0.0.1", port=free_port(), device_id="cam26", discovery=False,
                    close_timeout=0.2, spool=str(spool), **FAST)
    assert sink.queue_depth == 2  # a bad line, even one of bad bytes, costs only itself
    aside = tmp_path / "spool.jsonl.damaged"
    assert f"3 of its 5 lines are no kept prediction; queued the other 2; moved it to {aside}" in (
        caplog.text)
    assert aside.read_bytes().count(b"\n") == 5  # kept as it was, for whoever wants to look
    spool.mkdir()  # where the spool goes: the save fails, the predictions count as dropped
    sink.close()
    assert sink.stats()["dropped"] == 2 and sink.stats()["spooled"] == 0
    assert "cannot keep 2 predictions in the spool" in caplog.text
    with pytest.raises(ConfigError, match="is a folder; give a file name in it"):
        MqttSink(host="127.0.0.1", spool=str(spool))
    with pytest.raises(ConfigError, match=r"no folder .*; create it or choose another path"):
        MqttSink(host="127.0.0.1", spool=str(tmp_path / "gone" / "spool.jsonl"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is not a regular file"):  # not a start that hangs
        MqttSink(host="127.0.0.1", spool=str(fifo))
    with pytest.raises(ValueError, match="spool needs qos 1 or 2"):
        MqttSink(host="127.0.0.1", qos=0, spool=str(tmp_path / "s.jsonl"))


def test_one_sink_at_a_time_has_a_spool(tmp_path: Path) -> None:
    """A second sink on a spool, in this process or another, is refused at its start and
    names the holder; the first one's close lets go of it, and so does its process's death."""
    spool = tmp_path / "spool.jsonl"
    lock = tmp_path / ".spool.jsonl.lock"
    options: dict[str, Any] = {"host": "127.0.0.1", "port": free_port(), "discovery": False,
                               "close_timeout": 0.1, "spool": str(spool), **FAST}
    first = MqttSink(device_id="one", **options)
    assert first.spool is not None and first.spool.holder() == os.getpid()
    with pytest.raises(SinkError, match=re.escape(
            f"spool {spool} is in use by another MQTT sink (process {os.getpid()}); give each "
            "sink its own spool, or stop the other first")):
        MqttSink(device_id="two", **options)
    first.publish(prediction(0))
    first.close()  # the broker is away: the prediction is kept, and the spool let go of
    assert spooled_frames(spool) == [0] and not lock.exists()
    assert first.spool.holder() is None
    # Another process claims it, as a running service does, and is killed: the kernel lets go.
    code = ("import sys\nfrom edge_sdk.sinks.mqtt_spool import MqttSpool\n"
            f"MqttSpool({str(spool)!r}).claim()\nprint('claimed', flush=True)\nsys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "claimed\n"
        with pytest.raises(SinkError, match=f"in use by another MQTT sink \\(process {holder.pid}\\)"):
            MqttSink(device_id="three", **options)
        holder.kill()
        holder.wait(10)
    finally:
        holder.kill()
        holder.wait(10)
    assert lock.exists()  # left by the kill, no longer locked
    third = MqttSink(device_id="four", **options)
    assert third.queue_depth == 1  # what the first kept, not sent twice by a second sink
    third.close()
    assert not lock.exists()


def test_a_lock_file_another_user_left_is_taken_over(tmp_path: Path) -> None:
    """A run as root that was killed leaves a lock file the service user cannot write: the
    claim still locks it, then makes it anew, so a refusal names the running process, not the
    dead one. Run under `python_without_root_override` so that, as root (CI), the file's mode binds."""
    spool = tmp_path / "spool.jsonl"
    lock = tmp_path / ".spool.jsonl.lock"
    lock.write_text("999999\n")
    lock.chmod(0o444)
    code = ("import os\nfrom edge_sdk.sinks.mqtt_spool import MqttSpool\n"
            f"s = MqttSpool({str(spool)!r})\ns.claim()\n"
            "print(os.getpid(), s.holder(), open(s.lock_path).read().strip(), flush=True)\n")
    proc = python_without_root_override(code)
    assert proc.returncode == 0, proc.stderr
    pid, holder, written = proc.stdout.split()
    assert holder == written == pid, proc.stdout
    assert "would not be refused" not in proc.stderr  # guarded, not warned about


# More than a fast machine sends in the stop's flush: all of 3000 arrived in it on a Zen 5
# machine (about 9000 a second at QoS 1).
_MANY = 10_000


@pytest.mark.parametrize("qos", [1, 2])
def test_a_stop_while_connected_spools_no_prediction_that_also_arrived(
    tmp_path: Path, qos: int
) -> None:
    """Stopped with thousands still queued on a live connection: what paho has in flight gets
    its acknowledgement before the counts settle, so nothing is both delivered and kept."""
    broker = Mosquitto(tmp_path)
    broker.start()
    spool = tmp_path / "spool.jsonl"
    options: dict[str, Any] = {"host": broker.host, "port": broker.port, "device_id": "cam27",
                               "qos": qos, "discovery": False, "queue_size": _MANY,
                               "spool": str(spool), **FAST}
    topic = "edge-sdk/cam27/prediction"
    rec = Recorder(broker, [topic])
    try:
        first = MqttSink(close_timeout=0.6, **options)  # the service's
        assert first.wait_connected(5)
        for i in range(_MANY):
            first.publish(prediction(i), None)
        first.close()
        stats = first.stats()
        assert stats["spooled"] > 0 and stats["published"] + stats["spooled"] == _MANY, stats
        second = MqttSink(close_timeout=1.5, **options)
        assert second.flush(30)
        second.close()
        assert rec.wait_for(lambda m: len(m) >= _MANY, 30)
        time.sleep(0.5)  # a duplicate would come now
        assert frames_of(rec, topic) == list(range(_MANY))
    finally:
        rec.close()
        broker.stop()


class SlowConnack:
    """A TCP relay to the broker that holds the broker's first reply (the CONNACK) for `hold`
    seconds: the window in which paho has an open socket but no connection yet."""

    def __init__(self, broker: Mosquitto, hold: float) -> None:
        self.broker, self.hold = broker, hold
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                upstream = socket.create_connection((self.broker.host, self.broker.port))
                threading.Thread(target=self._relay, args=(client, upstream, 0.0), daemon=True).start()
                threading.Thread(target=self._relay, args=(upstream, client, self.hold),
                                 daemon=True).start()

    @staticmethod
    def _relay(src: socket.socket, dst: socket.socket, hold: float) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if hold:
                    time.sleep(hold)
                    hold = 0.0
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()


def test_predictions_made_before_the_connack_do_not_overtake_older_ones(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """paho sends a new message at once on an open socket, even before the CONNACK, and what it
    already held only after it: the sink hands nothing over until the connection is there and
    paho has resent what it held, so the spool's 5 still arrive before the 3 made meanwhile."""
    spool = tmp_path / "spool.jsonl"
    spool.write_text("".join(json.dumps({"frame": i, "payload": json.dumps(prediction(i).to_dict())})
                             + "\n" for i in range(5)))
    relay = SlowConnack(mosquitto, hold=0.5)
    topic = "edge-sdk/cam32/prediction"
    rec = Recorder(mosquitto, [topic])
    sink = MqttSink(host="127.0.0.1", port=relay.port, device_id="cam32", discovery=False,
                    spool=str(spool), **FAST)
    try:
        time.sleep(0.25)  # the socket is open, the CONNACK held
        assert not sink.connected
        for i in range(5, 8):
            sink.publish(prediction(i), None)
        assert sink.flush(10)
        assert rec.wait_for(lambda m: len(m) == 8)
        assert frames_of(rec, topic) == list(range(8))
    finally:
        sink.close()
        rec.close()
        relay.close()


def wait_until(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def spooled_frames(spool: Path) -> list[int]:
    if not spool.exists():
        return []
    return [json.loads(line)["frame"] for line in spool.read_text().splitlines()]


def test_a_checkpoint_keeps_the_prediction_on_its_way_to_paho(tmp_path: Path) -> None:
    """A tick that lands while the last prediction is being handed to paho (out of the backlog,
    not yet among the sent ones) must keep it on the disk: it is not acknowledged yet. The tick
    is run by hand from inside paho's publish, where the timer thread could have run it."""
    spool = tmp_path / "spool.jsonl"
    broker = Mosquitto(tmp_path)
    sink = MqttSink(host=broker.host, port=broker.port, device_id="cam29", discovery=False,
                    spool=str(spool), spool_every=3600, **FAST)
    on_disk: list[list[int]] = []
    real_publish = sink.client.publish

    def publish(topic: str, payload: Any = None, *args: Any, **kwargs: Any) -> Any:
        if topic.endswith("/prediction") and json.loads(payload)["frame"] == 2:
            sink._checkpoint()
            on_disk.append(spooled_frames(spool))
        return real_publish(topic, payload, *args, **kwargs)

    try:
        for i in range(3):
            sink.publish(prediction(i), None)
        sink._checkpoint()  # the broker is away: all three go to the disk
        assert spooled_frames(spool) == [0, 1, 2]
        sink.client.publish = publish  # type: ignore[method-assign]
        broker.start()
        assert sink.flush(10)
        assert on_disk and 2 in on_disk[0], on_disk
    finally:
        sink.close()
        broker.stop()


def test_a_stop_keeps_the_prediction_stuck_on_its_way_to_paho(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """A hand-over that outlasts the stop (paho's publish held up, here by an event the test
    holds): the stop keeps that prediction in the spool, not in `dropped`."""
    spool = tmp_path / "spool.jsonl"
    sink = MqttSink(host=mosquitto.host, port=mosquitto.port, device_id="cam30",
                    discovery=False, spool=str(spool), close_timeout=0.5, **FAST)
    release = threading.Event()
    real_publish = sink.client.publish

    def publish(topic: str, *args: Any, **kwargs: Any) -> Any:
        if topic.endswith("/prediction"):
            release.wait(10)
        return real_publish(topic, *args, **kwargs)

    try:
        assert sink.wait_connected(5)
        sink.client.publish = publish  # type: ignore[method-assign]
        publisher = threading.Thread(target=sink.publish, args=(prediction(0), None))
        publisher.start()
        assert wait_until(lambda: sink.queue_depth == 1)
        sink.close()
        assert (sink.stats()["spooled"], sink.stats()["dropped"]) == (1, 0), sink.stats()
        assert spooled_frames(spool) == [0]
    finally:
        release.set()
        sink.close()
    publisher.join(10)


def test_the_spool_checkpoints_an_outage_writing_each_prediction_once(tmp_path: Path) -> None:
    """With the broker away, each checkpoint appends what came since the last one (so a power
    cut loses at most `spool_every` of them), writes nothing while nothing changes, and once
    the broker is back and has them all the file goes, with the sink still running."""
    spool = tmp_path / "spool.jsonl"
    broker = Mosquitto(tmp_path)
    sink = MqttSink(host=broker.host, port=broker.port, device_id="cam28", discovery=False,
                    spool=str(spool), spool_every=0.2, **FAST)
    assert sink.spool is not None
    rec = None
    try:
        for i in range(5):
            sink.publish(prediction(i), None)
        # Each count goes up right after its write is on the disk: waited for as well.
        assert wait_until(lambda: spooled_frames(spool) == list(range(5))
                          and sink.spool.writes > 0), spooled_frames(spool)
        inode, writes = spool.stat().st_ino, sink.spool.writes  # 1, or 2 if a tick fell between
        for i in range(5, 7):
            sink.publish(prediction(i), None)
        # Each line once, in order, in the same file: appended, not rewritten.
        assert wait_until(lambda: spooled_frames(spool) == list(range(7))
                          and sink.spool.writes > writes), spooled_frames(spool)
        assert spool.stat().st_ino == inode and sink.spool.writes <= writes + 2
        writes = sink.spool.writes
        time.sleep(0.7)  # ticks with nothing new
        assert sink.spool.writes == writes
        broker.start()
        rec = Recorder(broker, ["edge-sdk/cam28/prediction"])
        assert sink.flush(10)
        assert wait_until(lambda: not spool.exists() and sink.spool.writes > writes), \
            "the spool outlived its delivery"
        # Only the removal: no checkpoint during the delivery left a line out and wrote again
        # (one on its way to paho, in neither the backlog nor the sent ones, once did).
        assert sink.spool.writes == writes + 1
        assert rec.wait_for(lambda m: len(m) == 7)
        assert frames_of(rec, "edge-sdk/cam28/prediction") == list(range(7))
    finally:
        sink.close()
        if rec is not None:
            rec.close()
        broker.stop()
    assert sink.spool.writes == writes + 1 and not spool.exists()  # the stop had nothing to keep


def test_a_broker_that_answers_gets_no_spool_writes(mosquitto: Mosquitto, tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    sink = MqttSink(host=mosquitto.host, port=mosquitto.port, device_id="cam29", discovery=False,
                    spool=str(spool), spool_every=0.5, **FAST)
    assert sink.spool is not None
    try:
        assert sink.wait_connected(5)
        for i in range(200):  # 2 s of predictions at 100 a second: 4 checkpoint ticks
            sink.publish(prediction(i), None)
            time.sleep(0.01)
        assert sink.flush(5)
    finally:
        sink.close()
    assert sink.spool.writes == 0 and not spool.exists()
    assert sink.stats()["published"] == 200


def test_a_spool_line_cut_short_by_a_power_cut_costs_that_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The append a power cut caught ends without a newline: the next start drops it, cuts it
    off the file (so the next append does not run into it) and sets nothing aside."""
    caplog.set_level(logging.WARNING, "edge_sdk.mqtt")
    spool = tmp_path / "spool.jsonl"
    good = '{"frame": 1, "payload": "{}"}\n{"frame": 2, "payload": "{}"}\n'
    spool.write_text(good + '{"frame": 3, "payl')
    sink = MqttSink(host="127.0.0.1", port=free_port(), device_id="cam30", discovery=False,
                    close_timeout=0.2, spool=str(spool), **FAST)
    try:
        assert sink.queue_depth == 2
        assert spool.read_text() == good
        assert "ended in a line cut short" in caplog.text and "queued the other 2" in caplog.text
        assert not (tmp_path / "spool.jsonl.damaged").exists()
    finally:
        sink.close()
    assert spooled_frames(spool) == [1, 2]


def test_a_checkpoint_that_cannot_write_is_logged_once_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "edge_sdk.mqtt")
    spool = tmp_path / "spool.jsonl"
    sink = MqttSink(host="127.0.0.1", port=free_port(), device_id="cam31", discovery=False,
                    close_timeout=0.2, spool=str(spool), spool_every=0.1, **FAST)
    try:
        spool.mkdir()  # what the rename of each checkpoint runs into, as a full disk would
        for i in range(6):
            sink.publish(prediction(i), None)
            time.sleep(0.15)
        assert caplog.text.count("cannot write the spool") == 1, caplog.text
        assert "a power cut would lose the" in caplog.text
        spool.rmdir()
        sink.publish(prediction(6), None)
        # The file is in place a moment before the line saying so is logged: wait for both.
        assert wait_until(lambda: spooled_frames(spool) == list(range(7))
                          and "is written again" in caplog.text), (spooled_frames(spool),
                                                                   caplog.text)
    finally:
        sink.close()
    assert spooled_frames(spool) == list(range(7))


def service_config(broker: Mosquitto, device_id: str) -> str:
    return f"""
        [source]
        uri = "test://?fps=30&size=320x240"
        [model]
        threads = 1
        [mqtt]
        enabled = true
        host = "{broker.host}"
        port = {broker.port}
        device_id = "{device_id}"
        discovery = false
        reconnect_min = 0.1
        reconnect_max = 0.5
    """


@pytest.mark.slow
def test_service_killed_with_sigkill_goes_offline_through_the_last_will(
    mosquitto: Mosquitto, model_home: Path, tmp_path: Path
) -> None:
    rec = Recorder(mosquitto, ["edge-sdk/svc1/#"])
    service = ServiceProcess(service_config(mosquitto, "svc1"), tmp_path,
                             env={"EDGE_SDK_HOME": str(model_home)})
    try:
        assert rec.wait_for(lambda m: len(m) >= 5, 60), service.log
        assert rec.payloads("edge-sdk/svc1/status")[0] == b"online"
        service.signal(signal.SIGKILL)
        service.wait(10)
        assert rec.wait_for(lambda m: m[-1][:2] == ("edge-sdk/svc1/status", b"offline")), rec.messages[-3:]
        assert retained(mosquitto, "edge-sdk/svc1/status") == b"offline"
    finally:
        service.stop()
        rec.close()


@pytest.mark.slow
def test_service_sigterm_publishes_offline_and_exits_0_within_2s(
    mosquitto: Mosquitto, model_home: Path, tmp_path: Path
) -> None:
    topic = "edge-sdk/svc2/prediction"
    rec = Recorder(mosquitto, ["edge-sdk/svc2/#"])
    service = ServiceProcess(service_config(mosquitto, "svc2"), tmp_path,
                             env={"EDGE_SDK_HOME": str(model_home)})
    try:
        assert rec.wait_for(lambda m: len(m) >= 10, 60), service.log
        start = time.monotonic()
        service.signal(signal.SIGTERM)
        assert service.wait(5) == 0, service.log
        assert time.monotonic() - start < 2.0
        assert rec.wait_for(lambda m: m[-1][:2] == ("edge-sdk/svc2/status", b"offline"))
        assert retained(mosquitto, "edge-sdk/svc2/status") == b"offline"
        frames = frames_of(rec, topic)
        assert frames == sorted(frames) and len(frames) >= 10
        schema = rec.json(topic)[-1]
        assert schema["v"] == PREDICTION_SCHEMA_VERSION and schema["model"] == "squeezenet1.1"
        assert "MQTT: closed;" in service.log and "Traceback" not in service.log
    finally:
        service.stop()
        rec.close()


@pytest.mark.slow
def test_the_service_restarted_during_an_outage_loses_no_prediction_with_a_spool(
    model_home: Path, tmp_path: Path
) -> None:
    """The service runs with its broker down, is stopped (SIGTERM), and starts again once the
    broker is back: the first run's predictions arrive first, in order, with their capture
    times, then the second run's; the spool is gone after the second clean stop."""
    broker = Mosquitto(tmp_path)
    spool = tmp_path / "mqtt-spool.jsonl"
    config = service_config(broker, "svc3") + f'        spool = "{spool}"\n'
    env = {"EDGE_SDK_HOME": str(model_home)}
    first = ServiceProcess(config, tmp_path, env=env)
    try:
        assert first.wait_for_line("cannot reach broker", 60), first.log
        time.sleep(1.5)  # predictions pile up in the queue meanwhile
        first.signal(signal.SIGTERM)
        assert first.wait(5) == 0, first.log
    finally:
        first.stop()
    assert "kept in" in first.log and "for the next start" in first.log, first.log
    kept = [json.loads(line)["frame"] for line in spool.read_text().splitlines()]
    assert len(kept) >= 10 and kept == sorted(kept)
    stopped = time.time()
    messages = run_again_with_the_broker(broker, "svc3", config, tmp_path, env, kept)
    times = [utc_ms(m["time"]) / 1000 for m in messages]
    assert max(times[:len(kept)]) <= stopped < min(times[len(kept):])
    assert not spool.exists()


def run_again_with_the_broker(broker: Mosquitto, device_id: str, config: str, tmp_path: Path,
                              env: dict[str, str], kept: list[int]) -> list[Any]:
    """Start the broker and the service again; check the `kept` frames arrive first, in order,
    and that a SIGTERM ends it cleanly. Returns the predictions received."""
    broker.start()
    topic = f"edge-sdk/{device_id}/prediction"
    rec = Recorder(broker, [topic])
    second = ServiceProcess(config, tmp_path, env=env)
    try:
        assert rec.wait_for(lambda m: len(m) >= len(kept) + 10, 60), second.log
        messages = rec.json(topic)
        assert [m["frame"] for m in messages[:len(kept)]] == kept, second.log  # the first run's
        second.signal(signal.SIGTERM)
        assert second.wait(5) == 0, second.log
    finally:
        second.stop()
        rec.close()
        broker.stop()
    return messages


@pytest.mark.slow
def test_the_service_killed_during_an_outage_keeps_what_it_checkpointed(
    model_home: Path, tmp_path: Path
) -> None:
    """A power cut, as near as a test gets to one: the service is killed (SIGKILL, no close)
    while its broker is down. Its spool holds what was queued up to the last checkpoint, and
    the next start, with the broker back, delivers those first and in order."""
    broker = Mosquitto(tmp_path)
    spool = tmp_path / "mqtt-spool.jsonl"
    config = (service_config(broker, "svc4") + f'        spool = "{spool}"\n'
              + "        spool_every = 0.3\n")
    env = {"EDGE_SDK_HOME": str(model_home)}
    first = ServiceProcess(config, tmp_path, env=env)
    try:
        assert first.wait_for_line("cannot reach broker", 60), first.log
        # A second service on the same spool (one started by hand beside the unit) would send
        # the first one's predictions twice and overwrite its saves: it is refused at its start,
        # with exit status 1, which systemd restarts, not the 78 of a config error.
        second = ServiceProcess(config, tmp_path, env=env)
        try:
            assert second.wait(60) == 1, second.log
        finally:
            second.stop()
        assert second.lines[-1] == (
            f"Error: spool {spool} is in use by another MQTT sink (process {first.proc.pid}); "
            "give each sink its own spool, or stop the other first (a running service: sudo "
            "systemctl stop edge-classify)"), second.log
        assert "Traceback" not in second.log
        assert wait_until(lambda: len(spooled_frames(spool)) >= 20, 30), first.log
        first.signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.stop()
    kept = spooled_frames(spool)
    assert len(kept) >= 20 and kept == sorted(kept) and len(set(kept)) == len(kept)
    assert "kept in" not in first.log  # no stop ran: all of it came from the checkpoints
    lock = tmp_path / ".mqtt-spool.jsonl.lock"
    assert lock.exists()  # left by the kill, but no longer locked: the next start claims it
    run_again_with_the_broker(broker, "svc4", config, tmp_path, env, kept)
    assert not spool.exists() and not lock.exists()


def test_pipeline_publishes_every_prediction_and_reports_the_gauges(
    mosquitto: Mosquitto, classifier: Any
) -> None:
    from edge_sdk.pipeline import Pipeline

    topic = "edge-sdk/pipe/prediction"
    rec = Recorder(mosquitto, [topic])
    sink = MqttSink(host=mosquitto.host, port=mosquitto.port, device_id="pipe", discovery=False)
    assert sink.wait_connected(5)
    snapshot = Pipeline("test://?size=320x240&live=0&count=30", classifier, [sink],
                        keep_all=True).run()
    assert rec.wait_for(lambda m: len(m) == 30)
    assert frames_of(rec, topic) == list(range(30))
    assert snapshot["gauges"]["mqtt_published_total"] == 30.0
    assert snapshot["gauges"]["mqtt_overflow_total"] == 0.0
    assert retained(mosquitto, "edge-sdk/pipe/status") == b"offline"  # the pipeline closed it
    rec.close()
