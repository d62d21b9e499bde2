"""The systemd side: the unit passes `systemd-analyze verify`, sd_notify on a real socket, and a
service whose watchdog pings stop when its camera stalls."""

from __future__ import annotations

import configparser
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from support.mjpeg_server import MjpegServer
from support.mosquitto import Mosquitto, Recorder, mosquitto
from support.notify import NotifyListener, listener
from support.service_proc import ServiceProcess, edge_classify

from edge_sdk.cli.errors import EX_CONFIG
from edge_sdk.cli.service import UNIT_WATCHDOG_SEC, parse_timespan
from edge_sdk.doctor import CREDENTIAL_SOURCE
from edge_sdk.service.notify import SystemdNotifier, watchdog_seconds
from edge_sdk.service.watchdog import WatchdogSink
from edge_sdk.types import Label, Prediction

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "edge-classify.service"

__all__ = ["listener", "mosquitto"]


def unit_options() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this environment's edge-classify.
    unit = tmp_path / "edge-classify.service"
    text = UNIT.read_text().replace("/opt/edge-sdk/venv/bin/edge-classify", edge_classify())
    unit.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_unit_has_the_service_contract() -> None:
    service = unit_options()["Service"]
    expected = {
        "Type": "notify", "Restart": "on-failure", "User": "edge-sdk",
        "SupplementaryGroups": "video", "ProtectSystem": "strict", "NoNewPrivileges": "yes",
        "PrivateTmp": "yes", "ProtectHome": "yes", "StateDirectory": "edge-sdk",
        "ConfigurationDirectory": "edge-sdk",
        "LoadCredential": "mqtt-password:/etc/edge-sdk/mqtt-password",
        "RestartPreventExitStatus": f"2 {EX_CONFIG}",
    }
    for key, value in expected.items():
        assert service.get(key) == value, key
    assert service["WatchdogSec"].endswith("s")
    # check-config checks [service] stall_after against this when systemd has no unit loaded,
    # and doctor reads the credential's file when systemd does not hand it over.
    assert parse_timespan(service["WatchdogSec"]) == UNIT_WATCHDOG_SEC
    assert service["LoadCredential"] == f"mqtt-password:{CREDENTIAL_SOURCE}"
    assert "run --config /etc/edge-sdk/config.toml" in service["ExecStart"]
    assert "PrivateDevices" not in service  # it would hide the camera
    # No start limit: a camera away for minutes must not leave the unit failed for good.
    assert unit_options()["Unit"]["StartLimitIntervalSec"] == "0"


def test_notifier_sends_datagrams_to_a_real_socket(listener: NotifyListener) -> None:
    notifier = SystemdNotifier(listener.path)
    assert notifier.enabled
    assert notifier.ready(status="warming up")
    assert notifier.watchdog()
    assert notifier.status("12.5 predictions/s\nsecond line")
    assert notifier.stopping()
    assert listener.wait_for(lambda f: "STOPPING=1" in f)
    assert listener.fields() == ["READY=1", "STATUS=warming up", "WATCHDOG=1",
                                 "STATUS=12.5 predictions/s second line", "STOPPING=1"]
    notifier.close()


def test_no_status_replaces_the_stops_own_once_stopping(listener: NotifyListener) -> None:
    notifier = SystemdNotifier(listener.path)
    assert notifier.stopping(status="stopping on SIGTERM")
    assert not notifier.status("12.5 predictions/s")  # the heartbeat, while the sinks drain
    assert notifier.stopping(status="failed: the disk is full")
    assert listener.wait_for(lambda f: "STATUS=failed: the disk is full" in f)
    assert listener.fields() == ["STOPPING=1", "STATUS=stopping on SIGTERM", "STOPPING=1",
                                 "STATUS=failed: the disk is full"]
    notifier.close()


def test_a_status_racing_the_stop_never_lands_after_it(listener: NotifyListener) -> None:
    """The heartbeat thread sending its rate just as SIGTERM's handler sends STOPPING: the
    check and the send share a lock, so the rate goes out first or not at all."""
    notifier = SystemdNotifier(listener.path)
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.is_set():
            notifier.status("12.5 predictions/s")
            time.sleep(0.0005)  # the listener must keep up: a full queue drops datagrams

    thread = threading.Thread(target=heartbeat)
    thread.start()
    time.sleep(0.1)
    notifier.stopping(status="stopping on SIGTERM")
    time.sleep(0.1)
    stop.set()
    thread.join(5)
    assert listener.wait_for(lambda f: "STATUS=stopping on SIGTERM" in f)
    time.sleep(0.1)
    fields = listener.fields()
    assert "STATUS=12.5 predictions/s" in fields
    assert "STATUS=12.5 predictions/s" not in fields[fields.index("STOPPING=1"):]
    notifier.close()


def test_notifier_never_blocks_on_a_socket_nobody_reads(tmp_path: Path) -> None:
    # A busy PID 1 that does not read: once the kernel's queue is full a blocking send would
    # hang the watchdog thread, and SIGTERM's handler waiting for its lock.
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unread:
        unread.bind(str(path))
        notifier = SystemdNotifier(str(path))
        started = time.monotonic()
        results = [notifier.watchdog() for _ in range(200)]
        assert time.monotonic() - started < 2.0
        assert results[0] and not results[-1]  # the first went through; later ones were refused
        notifier.close()


def test_a_newline_in_a_status_cannot_add_a_field(listener: NotifyListener) -> None:
    notifier = SystemdNotifier(listener.path)
    notifier.ready(status="failed: /tmp/x\nREADY=1\nWATCHDOG_USEC=0")
    notifier.stopping(status="bye\nX=1")
    assert listener.wait_for(lambda f: "STOPPING=1" in f)
    assert listener.fields() == ["READY=1", "STATUS=failed: /tmp/x READY=1 WATCHDOG_USEC=0",
                                 "STOPPING=1", "STATUS=bye X=1"]
    notifier.close()


def test_notifier_without_systemd_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = SystemdNotifier()
    assert not notifier.enabled and not notifier.ready() and not notifier.watchdog()


def test_notifier_survives_a_vanished_socket(tmp_path: Path) -> None:
    notifier = SystemdNotifier(str(tmp_path / "gone"))
    assert notifier.enabled and not notifier.watchdog()


def test_watchdog_seconds_reads_systemds_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_seconds() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert watchdog_seconds() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_seconds() is None


def test_a_watchdog_variable_that_makes_no_sense_is_said_not_silent(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "30s")
    assert watchdog_seconds() is None
    assert "WATCHDOG_USEC='30s' is not a number of microseconds" in caplog.text
    monkeypatch.setenv("WATCHDOG_USEC", "1")  # pings every 0.25 µs would spin a core
    assert watchdog_seconds() == 1.0


def _prediction(i: int) -> Prediction:
    return Prediction(i, i, (Label(1, "tabby", 0.9),))


def test_watchdog_pings_only_while_predictions_flow(listener: NotifyListener) -> None:
    sink = WatchdogSink(SystemdNotifier(listener.path), watchdog=0.4, status_every=0.15)
    try:
        time.sleep(0.3)  # before the first prediction: neither READY nor pings
        assert listener.fields() == []
        flowing = threading.Event()

        def feed(seconds: float) -> None:
            end = time.monotonic() + seconds
            i = 0
            while time.monotonic() < end:
                sink.publish(_prediction(i), None)
                i += 1
                time.sleep(0.02)
            flowing.set()

        feed(0.6)
        fields = listener.fields()
        assert fields[0] == "READY=1" and fields[1].startswith("STATUS=first prediction: tabby")
        assert fields.count("READY=1") == 1
        assert fields.count("WATCHDOG=1") >= 3
        assert any(f.startswith("STATUS=") and "predictions/s" in f for f in fields)
        # Stall: pings stop once the last prediction is stall_after (0.2 s) old.
        stalled_at = time.monotonic()
        assert listener.wait_for(lambda f: any(x.startswith("STATUS=stalled") for x in f), 2)
        pings = listener.times("WATCHDOG=1")
        assert max(pings) <= stalled_at + 0.2 + 0.15
        time.sleep(0.6)
        assert listener.times("WATCHDOG=1") == pings
        # Predictions again: pings resume.
        feed(0.3)
        assert listener.wait_for(lambda f: f.count("WATCHDOG=1") > len(pings), 2)
    finally:
        sink.close()


def test_watchdog_sink_rejects_bad_timeouts() -> None:
    with pytest.raises(ValueError, match="stall_after"):
        WatchdogSink(SystemdNotifier(""), watchdog=1.0, stall_after=2.0)
    with pytest.raises(ValueError, match="watchdog"):
        WatchdogSink(SystemdNotifier(""), watchdog=0.0)


@pytest.mark.slow
def test_service_notifies_systemd_and_stops_pinging_when_the_camera_stalls(
    tmp_path: Path, model_home: Path, listener: NotifyListener
) -> None:
    """The real service on a real MJPEG camera over HTTP: READY after the first prediction,
    WATCHDOG while frames come, none once the camera stops sending, STOPPING on SIGTERM."""
    camera = MjpegServer(fps=20, size=(320, 240)).start()
    config = f"""
        [source]
        uri = "{camera.url}"
        [model]
        threads = 1
        [service]
        status_every = 0.5
        stall_after = 0.5
    """
    service = ServiceProcess(config, tmp_path, env={
        "EDGE_SDK_HOME": str(model_home), "NOTIFY_SOCKET": listener.path,
        "WATCHDOG_USEC": "2000000",
    })
    try:
        assert listener.wait_for(lambda f: "READY=1" in f, 60), service.log
        assert listener.wait_for(lambda f: f.count("WATCHDOG=1") >= 3, 10), service.log
        assert listener.wait_for(lambda f: any("predictions/s" in x for x in f), 10)
        camera.paused = True
        paused_at = time.monotonic()
        assert listener.wait_for(lambda f: any(x.startswith("STATUS=stalled") for x in f), 10)
        pings = listener.times("WATCHDOG=1")
        # Last ping within stall_after (+ one ping period, + frames already in flight).
        assert max(pings) < paused_at + 0.5 + 0.5 + 0.5
        time.sleep(1.5)
        assert listener.times("WATCHDOG=1") == pings, "pinged while stalled"
        assert "watchdog pings stopped" in service.log
        camera.paused = False
        assert listener.wait_for(lambda f: f.count("WATCHDOG=1") > len(pings), 20), service.log
        start = time.monotonic()
        service.signal(signal.SIGTERM)
        assert service.wait(5) == 0
        assert time.monotonic() - start < 2.0
        assert listener.wait_for(lambda f: "STOPPING=1" in f, 2)
    finally:
        service.stop()
        camera.stop()


class SilentServer:
    """A TCP server that accepts connections and never sends a byte (a hung camera)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self._conns.append(self.sock.accept()[0])
                self.accepted.set()

    def close(self) -> None:
        self.sock.close()
        for conn in self._conns:
            conn.close()


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_sigterm_while_the_camera_never_answers_exits_0_at_once(
    tmp_path: Path, model_home: Path, scheme: str
) -> None:
    """SIGTERM during the first connect (5 s timeout) to a camera that accepts the connection
    and stays silent: exit 0 within 2 s, no error logged for the cut-short connect."""
    camera = SilentServer()
    config = f'[source]\nuri = "{scheme}://127.0.0.1:{camera.port}/live"\n[model]\nthreads = 1\n'
    service = ServiceProcess(config, tmp_path, env={"EDGE_SDK_HOME": str(model_home)})
    try:
        assert camera.accepted.wait(30), service.log  # the service is inside the connect now
        time.sleep(0.2)
        start = time.monotonic()
        service.signal(signal.SIGTERM)
        assert service.wait(5) == 0, service.log
        assert time.monotonic() - start < 2.0
        service.stop()
        assert "SIGTERM: stopping" in service.log
        assert " ERROR " not in service.log and "Traceback" not in service.log, service.log
    finally:
        service.stop()
        camera.close()


def test_sighup_reopens_the_json_lines_file_for_log_rotation(tmp_path: Path, model_home: Path) -> None:
    out = tmp_path / "predictions.jsonl"
    config = (f'[source]\nuri = "test://?fps=20&size=160x120"\n[model]\nthreads = 1\n'
              f'[jsonl]\nenabled = true\npath = "{out}"\n')
    service = ServiceProcess(config, tmp_path, env={"EDGE_SDK_HOME": str(model_home)})
    try:
        wait = time.monotonic() + 30
        while not (out.exists() and out.read_text().count("\n") >= 3):
            assert time.monotonic() < wait and service.proc.poll() is None, service.log
            time.sleep(0.05)
        rotated = out.rename(tmp_path / "predictions.jsonl.1")  # what logrotate does first
        service.signal(signal.SIGHUP)
        assert service.wait_for_line("SIGHUP: reopening jsonl"), service.log
        while not (out.exists() and out.read_text().count("\n") >= 3):
            assert time.monotonic() < wait + 30 and service.proc.poll() is None, service.log
            time.sleep(0.05)
        service.signal(signal.SIGTERM)
        assert service.wait(10) == 0, service.log
        # Every line is whole, in one file or the other, and none repeats.
        frames = [json.loads(line)["frame"] for f in (rotated, out) for line in f.read_text().splitlines()]
        assert frames == sorted(set(frames)) and len(frames) >= 6
    finally:
        service.stop()


def test_a_run_whose_only_output_kept_failing_ends_with_status_1(tmp_path: Path, model_home: Path) -> None:
    config = ('[source]\nuri = "test://?size=160x120&count=5&live=0"\n[model]\nthreads = 1\n'
              '[jsonl]\nenabled = true\npath = "/dev/full"\n')
    service = ServiceProcess(config, tmp_path, env={"EDGE_SDK_HOME": str(model_home)})
    try:
        assert service.wait(60) == 1, service.log
        service.stop()
        summary = [line for line in service.lines if " ERROR " in line and "jsonl" in line]
        assert summary and "No space left on device" in summary[-1], service.log
        assert "Traceback" not in service.log
    finally:
        service.stop()


def test_a_fatal_error_carries_the_journal_priority_and_the_status(
    tmp_path: Path, listener: NotifyListener
) -> None:
    service = ServiceProcess("[source]\nuri = 'test://'\n[mqtt]\nhots = 'x'\n", tmp_path, env={
        "NOTIFY_SOCKET": listener.path, "JOURNAL_STREAM": "8:1234"})
    try:
        assert service.wait(30) == 78
        service.stop()
        # `journalctl -p warning` shows the line only with an error's priority.
        assert service.lines[-1].startswith("<3>Error: ") and "'hots'" in service.lines[-1], service.log
        assert listener.wait_for(lambda f: any(x.startswith("STATUS=failed: ") for x in f))
    finally:
        service.stop()


@pytest.mark.slow
def test_service_run_applies_command_line_overrides(
    tmp_path: Path, model_home: Path, mosquitto: Mosquitto
) -> None:
    """`run --config FILE` with options: each option wins over the file's value (a file port
    nothing listens on, a device id and frame count the options replace)."""
    config = f"""
        [source]
        uri = "test://?size=320x240&live=0"
        [model]
        threads = 1
        [pipeline]
        max_frames = 1000
        [mqtt]
        enabled = true
        host = "{mosquitto.host}"
        port = 1
        device_id = "from-file"
        discovery = false
    """
    recorder = Recorder(mosquitto, ["edge-sdk/#"])
    service = ServiceProcess(config, tmp_path, env={"EDGE_SDK_HOME": str(model_home)}, args=[
        "--max-frames", "4", "--device-id", "from-flag", "--mqtt-port", str(mosquitto.port),
        "--log-level", "warning",
    ])
    try:
        assert service.wait(60) == 0, service.log
        topic = "edge-sdk/from-flag/prediction"
        assert recorder.wait_for(lambda m: len([t for t, _, _ in m if t == topic]) >= 4), service.log
        assert len(recorder.json(topic)) == 4  # --max-frames, not the file's 1000
        assert recorder.last("edge-sdk/from-flag/status") == b"offline"
        assert not any("from-file" in t for t, _, _ in recorder.messages)
        assert "edge_sdk.service: starting" not in service.log  # --log-level warning
        assert "Traceback" not in service.log
    finally:
        service.stop()
        recorder.close()


@pytest.mark.slow
def test_service_serves_the_web_view_from_its_config(tmp_path: Path, model_home: Path) -> None:
    """`[web] enabled` in the service config: the page's API answers with live predictions
    while the service runs, and SIGTERM still ends it with 0."""
    import json
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = f"""
        [source]
        uri = "test://?size=320x240&fps=10"
        [model]
        threads = 1
        [web]
        enabled = true
        bind = "127.0.0.1:{port}"
    """
    service = ServiceProcess(config, tmp_path, env={"EDGE_SDK_HOME": str(model_home)})
    try:
        frames: list[int] = []
        deadline = time.monotonic() + 60
        while len(set(frames)) < 2 and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/prediction", timeout=2) as r:
                    frames.append(json.loads(r.read())["frame"])
            except OSError:
                pass  # not listening yet, or 503 before the first prediction
            time.sleep(0.2)
        assert len(set(frames)) >= 2, service.log  # predictions move on
        service.proc.send_signal(signal.SIGTERM)
        assert service.wait(10) == 0, service.log
        assert "Traceback" not in service.log
    finally:
        service.stop()


@pytest.mark.parametrize("config, args, expected", [
    # A stall_after the watchdog cannot honour: refused before the model loads.
    ("[service]\nstall_after = 5.0", [], "[service] stall_after = 5 must be below the unit's "
     "WatchdogSec (2 s)"),
    ("", ["--mqtt-host", "localhost", "--device-id", "a/b"],
     "command line: [mqtt] device_id = 'a/b' must not contain"),
])
def test_service_refuses_a_bad_config_in_one_line_under_systemd(
    tmp_path: Path, listener: NotifyListener, config: str, args: list[str], expected: str
) -> None:
    # The model does not exist: getting past the config check would be a different error.
    text = f"[source]\nuri = 'test://'\n[model]\nname = 'missing.tflite'\n{config}\n"
    service = ServiceProcess(text, tmp_path, args=args, env={
        "NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "2000000"})
    try:
        assert service.wait(30) == 78  # EX_CONFIG: the unit's RestartPreventExitStatus
        service.stop()
        assert len(service.lines) == 1, service.log  # no traceback, no start-up log
        assert service.lines[0].startswith("Error: ") and expected in service.lines[0]
        assert "READY=1" not in listener.fields()
    finally:
        service.stop()


def test_install_script_dry_run_lists_every_step(tmp_path: Path) -> None:
    script = REPO / "scripts" / "install-service.sh"
    assert subprocess.run(["bash", "-n", str(script)], timeout=30).returncode == 0
    result = subprocess.run(
        ["bash", str(script), "--dry-run", "--prefix", str(tmp_path / "opt"), "--model-home",
         str(tmp_path / "cache")], capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for step in ("usermod -aG video edge-sdk", f"-m venv {tmp_path}/opt/venv", "pip install",
                 "config.example.toml /etc/edge-sdk/config.toml",
                 'spool = "/var/lib/edge-sdk/mqtt-spool.jsonl"', "/etc/edge-sdk/mqtt-password",
                 "/etc/systemd/system/edge-classify.service", "check-config"):
        assert step in out, step
    assert "no built squeezenet1.1" in result.stderr  # and it says how to get one
