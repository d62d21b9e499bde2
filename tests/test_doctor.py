"""`edge-classify doctor` on this machine: real runtimes and model, a real broker, real /sys."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.mosquitto import Mosquitto, make_tls, mosquitto
from support.privileges import (
    only_for_root_with_setpriv,
    python_without_root_override,
    rerun_without_root_override,
)

from edge_sdk import config as cfg
from edge_sdk import doctor
from edge_sdk.cli.main import cli
from edge_sdk.sinks.mqtt_spool import MqttSpool

__all__ = ["mosquitto"]


def rows_by_name(rows: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {r.name: r for r in rows}


def mqtt_config(broker: Mosquitto, **mqtt: object) -> cfg.Config:
    return cfg.parse({"source": {"uri": "test://"},
                      "mqtt": {"enabled": True, "host": broker.host, "port": broker.port, **mqtt}})


def test_doctor_command_reports_a_table_with_fixes(
    tmp_path: Path, model_home: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE_SDK_HOME", str(model_home))
    config = tmp_path / "config.toml"
    config.write_text(f"""
        [source]
        uri = "v4l2:///dev/video7"
        [model]
        threads = 1
        [mqtt]
        enabled = true
        host = "{mosquitto.host}"
        port = {mosquitto.port}
    """)
    result = CliRunner().invoke(cli, ["doctor", "--config", str(config), "--runs", "3"])
    lines = result.output.splitlines()
    assert any(line.startswith("PASS  model on litert") and "ms per 720p frame" in line
               for line in lines), result.output
    assert any(line.startswith("PASS  mqtt broker") and "anonymously" in line for line in lines)
    assert any(line.startswith("PASS  runtime litert") for line in lines)
    assert any(line.startswith("PASS  disk") for line in lines)
    # No /dev/video7 here: a failure, its fix on the next line, and exit status 1.
    camera = next(i for i, line in enumerate(lines) if line.startswith("FAIL  camera"))
    assert "fix: " in lines[camera + 1]
    assert result.exit_code == 1
    assert "failed" in lines[-1]

    as_json = CliRunner().invoke(cli, ["doctor", "--config", str(config), "--runs", "0", "--json"])
    checks = json.loads(as_json.output)
    assert {"name", "status", "detail", "fix"} <= set(checks[0])
    assert {c["status"] for c in checks} <= {"PASS", "WARN", "FAIL", "SKIP"}


def test_the_mqtt_spool_row_says_what_is_kept_and_what_was_set_aside(tmp_path: Path) -> None:
    def spool_rows(**mqtt: object) -> list[doctor.Check]:
        config = cfg.parse({"mqtt": {"enabled": True, **mqtt}})
        return doctor.check_mqtt_spool(config)

    assert doctor.check_mqtt_spool(cfg.parse({})) == []  # [mqtt] off: the broker row says so
    (row,) = spool_rows()
    assert row.status == "SKIP" and "drops what is queued" in row.detail
    spool = tmp_path / "spool.jsonl"
    (row,) = spool_rows(spool=str(spool))
    assert row.status == "PASS" and "nothing waiting for the broker" in row.detail
    spool.write_text('{"frame": 1, "payload": "{}"}\n{"frame": 2, "payload": "{}"}\n')
    (tmp_path / "spool.jsonl.damaged").write_text("x\n")
    kept, aside = spool_rows(spool=str(spool))
    assert kept.status == "PASS" and "holds 2 predictions the broker has not" in kept.detail
    assert aside.status == "WARN" and "set aside as damaged" in aside.detail
    claimed = MqttSpool(spool)
    claimed.claim()  # as a running service's sink does
    try:
        in_use, kept, aside = spool_rows(spool=str(spool))
    finally:
        claimed.release()
    assert in_use.status == "PASS" and in_use.detail == (
        f"{spool} is in use by a running MQTT sink (process {os.getpid()}); another sink on it "
        "would be refused")
    assert "holds 2 predictions the broker has not acknowledged, checkpointed by that sink" in (
        kept.detail)
    (row,) = spool_rows(spool=str(tmp_path / "gone" / "s.jsonl"))
    assert row.status == "FAIL" and row.fix == "create it or choose another path"


def test_broker_checks_credentials_and_tls(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path, users={"cam": "right"})
    broker.start()
    try:
        good, bad = tmp_path / "good", tmp_path / "bad"
        good.write_text("right\n")
        bad.write_text("wrong\n")
        ok = doctor.check_broker(mqtt_config(broker, username="cam", password_file=str(good)))
        assert ok[0].status == "PASS" and "as 'cam'" in ok[0].detail
        refused = doctor.check_broker(mqtt_config(broker, username="cam", password_file=str(bad)))[0]
        assert refused.status == "FAIL" and "refused the login" in refused.detail
        assert "password" in refused.fix
    finally:
        broker.stop()
    down = doctor.check_broker(mqtt_config(broker))[0]
    assert down.status == "FAIL" and "unreachable" in down.detail and "broker running" in down.fix

    tls = make_tls(tmp_path / "tls")
    (tmp_path / "tls-broker").mkdir()
    secure = Mosquitto(tmp_path / "tls-broker", tls=tls)
    secure.start()
    try:
        trusted = doctor.check_broker(mqtt_config(secure, ca_file=str(tls.ca_file)))[0]
        assert trusted.status == "PASS" and "TLS" in trusted.detail
        untrusted = doctor.check_broker(mqtt_config(secure, tls=True))[0]
        assert untrusted.status == "FAIL" and "ca_file" in untrusted.fix
    finally:
        secure.stop()


def test_broker_login_uses_the_password_the_service_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = Mosquitto(tmp_path, users={"cam": "right"})
    broker.start()
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    config = mqtt_config(broker, username="cam")
    source = tmp_path / "mqtt-password"  # stands in for /etc/edge-sdk/mqtt-password
    try:
        # From a shell (no $CREDENTIALS_DIRECTORY): the file the unit loads the credential from.
        source.write_text("right\n")
        ok = doctor.check_broker(config, credential_source=source)[0]
        assert ok.status == "PASS" and "as 'cam'" in ok.detail
        # The install script writes it empty; the service would refuse to start, and says so.
        source.write_text("")
        empty = doctor.check_broker(config, credential_source=source)[0]
        assert empty.status == "FAIL" and "is empty" in empty.detail, empty
        assert "first line" in empty.fix
        # Under systemd: the credential systemd handed over wins over that file.
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / "mqtt-password").write_text("right\n")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
        assert doctor.check_broker(config, credential_source=source)[0].status == "PASS"
        monkeypatch.delenv("CREDENTIALS_DIRECTORY")
        # No password anywhere: the refusal says that none was sent and where to put one.
        none = doctor.check_broker(config, credential_source=tmp_path / "absent")[0]
        assert none.status == "FAIL" and "refused the login as 'cam' without a password" in none.detail
        assert "password_file" in none.fix and str(tmp_path / "absent") in none.fix
    finally:
        broker.stop()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to run a check as another user")
def test_an_unreadable_password_is_the_failure_not_a_refused_login(tmp_path: Path) -> None:
    """doctor as a user who may not read the password (install-service.sh runs it as the
    service user; the credential file is root's, mode 0600): the row says so, with the fix."""
    broker = Mosquitto(tmp_path, users={"cam": "right"})
    broker.start()
    # pytest's tmp_path is root's alone; the other user needs to reach the files' folder.
    folder = Path(tempfile.mkdtemp(prefix="doctor-", dir="/tmp"))
    try:
        folder.chmod(0o755)
        secret = folder / "mqtt-password"
        secret.write_text("right\n")
        secret.chmod(0o600)
        code = f"""if True:
            import dataclasses, json
            from pathlib import Path
            from edge_sdk import config as cfg, doctor
            base = {{"enabled": True, "host": "{broker.host}", "port": {broker.port},
                     "username": "cam"}}
            rows = [doctor.check_broker(cfg.parse({{"mqtt": base}}),
                                        credential_source=Path("{secret}"))[0],
                    doctor.check_broker(cfg.parse({{"mqtt": {{**base, "password_file": "{secret}"}}}}),
                                        credential_source=Path("/nonexistent"))[0]]
            print(json.dumps([dataclasses.asdict(r) for r in rows]))
        """
        env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
             "-c", code], capture_output=True, text=True, timeout=60, env=env, cwd=folder,
        )
        assert result.returncode == 0, result.stderr
        credential, password_file = json.loads(result.stdout)
        for row in (credential, password_file):
            assert row["status"] == "FAIL" and "refused" not in row["detail"], row
            assert row["detail"].startswith("cannot read the MQTT password: ")
            assert f"{str(secret)!r} is not readable by user nobody" in row["detail"]
        assert "sudo edge-classify doctor" in credential["fix"]
        assert "sudo chown edge-sdk" in password_file["fix"]
        assert broker.clients_connected() == 0  # no login was tried
    finally:
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_model_missing_names_the_build_command(tmp_path: Path) -> None:
    config = cfg.parse({"model": {"home": str(tmp_path / "empty-cache")}})
    rows = doctor.check_model(config, runs=0)
    litert = rows_by_name(rows)["model on litert"]
    assert litert.status == "FAIL" and "edge-classify models build squeezenet1.1" in litert.fix


def test_a_clearly_faster_runtime_is_suggested(model_home: Path) -> None:
    """OpenCV's DNN runs the float reference several times slower than onnxruntime (and LiteRT)
    on any CPU measured: configured on it, the report names the faster runtime and the setting."""
    config = cfg.parse({"model": {"runtime": "opencv", "precision": "float", "threads": 1,
                                  "home": str(model_home)}})
    rows = rows_by_name(doctor.check_model(config, runs=3))
    assert rows["model on opencv"].status == "PASS"
    choice = rows["runtime choice"]
    best = choice.detail.split()[0]
    assert choice.status == "WARN" and best in ("litert", "onnxruntime"), choice
    assert "as fast as the configured opencv on this machine" in choice.detail
    assert choice.fix == f'set [model] runtime = "{best}" (or run with --runtime {best})'
    assert doctor.format_table([choice]).endswith("\n0 failed, 1 warning, 0 passed")
    # Timed as fast as the fastest, or nearly: no row.
    assert doctor._faster_runtime("litert", {"litert": 2.0, "onnxruntime": 1.8}) == []
    assert doctor._faster_runtime("litert", {"onnxruntime": 1.0}) == []  # the chosen one failed


def test_onnxruntime_row_says_when_int8_weights_run_as_uint8(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_sdk.runtimes import onnxruntime as ortmod

    def onnx_row() -> str:
        return rows_by_name(doctor.check_runtimes(cfg.Config()))["runtime onnxruntime"].detail

    assert ("without VNNI" in onnx_row()) == ortmod.x86_without_vnni()
    # This CPU has VNNI; tests/test_no_vnni.py runs the runtime on an emulated one without.
    # Here only the row's wording is checked, so the CPU check answers as such a CPU would.
    monkeypatch.setattr(ortmod, "x86_without_vnni", lambda: True)
    assert onnx_row().endswith("x86 without VNNI: 8-bit int8 weights run as uint8 (exact, about 2x slower)")


def test_cameras_and_the_video_group(tmp_path: Path) -> None:
    # No V4L2 devices exist here: plain files stand in for /dev/video* nodes (same names, the
    # same permission bits doctor reads).
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "video0").touch()
    (dev / "video1").touch()
    found = doctor.check_cameras(cfg.parse({"source": {"uri": "0"}}), dev=str(dev))
    names = rows_by_name(found)
    assert names["camera"].status == "PASS" and "video0" in names["camera"].detail
    assert names["camera access"].status == "PASS"
    wrong = rows_by_name(doctor.check_cameras(cfg.parse({"source": {"uri": "3"}}), dev=str(dev)))
    assert wrong["camera device"].status == "FAIL" and "video1" in wrong["camera device"].fix
    empty = tmp_path / "nodev"
    empty.mkdir()
    none = doctor.check_cameras(cfg.parse({"source": {"uri": "0"}}), dev=str(empty))[0]
    assert none.status == "FAIL" and "[source] uri" in none.fix
    fine = doctor.check_cameras(cfg.parse({"source": {"uri": "clip.mp4"}}), dev=str(empty))[0]
    assert fine.status == "PASS"


def source_row(uri: str) -> doctor.Check:
    rows = doctor.check_source(cfg.parse({"source": {"uri": uri}}))
    assert len(rows) == 1
    return rows[0]


def test_file_and_image_sources_are_checked_for_being_there(tmp_path: Path, photos: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not checked for being a video, only for being there")
    assert source_row(str(clip)).status == "PASS"
    assert source_row(f"file://{clip}").status == "PASS"
    missing = source_row(str(tmp_path / "gone.mp4"))
    assert missing.status == "FAIL" and "does not exist" in missing.detail
    assert "[source] uri" in missing.fix
    folder = tmp_path / "shots"
    folder.mkdir()
    empty = source_row(str(folder))
    assert empty.status == "FAIL" and "no images" in empty.detail
    shutil.copy(photos / "chelsea.png", folder / "a.png")
    shutil.copy(photos / "coffee.png", folder / "b.png")
    assert source_row(str(folder)) == doctor.Check("source", "PASS", f"2 images in {folder}")
    assert source_row(f"{folder}/*.png").status == "PASS"
    assert source_row(f"{folder}/*.jpg").status == "FAIL"
    assert doctor.check_source(cfg.parse({"source": {"uri": "0"}})) == []  # check_cameras' job
    assert doctor.check_source(cfg.parse({"source": {"uri": "test://"}})) == []


def test_a_watched_folder_may_be_empty_but_must_be_there(tmp_path: Path, photos: Path) -> None:
    def watched(uri: str) -> doctor.Check:
        rows = doctor.check_source(cfg.parse({"source": {"uri": uri, "options": {"watch": True}}}))
        assert len(rows) == 1
        return rows[0]

    empty = watched(str(tmp_path))
    assert empty == doctor.Check("source", "PASS", f"watching {tmp_path}: 0 images there now")
    shutil.copy(photos / "chelsea.png", tmp_path / "a.png")
    assert watched(f"{tmp_path}/*.png").detail == f"watching {tmp_path}/*.png: 1 image there now"
    missing = watched(str(tmp_path / "share"))
    assert missing.status == "FAIL" and "the watched folder" in missing.detail
    assert "mount its disk" in missing.fix
    assert watched(str(tmp_path / "gone" / "*.jpg")).status == "FAIL"


def test_unreadable_images_in_a_source_folder(tmp_path: Path, photos: Path) -> None:
    for name in ("a.png", "b.png"):
        shutil.copy(photos / "chelsea.png", tmp_path / name)
    (tmp_path / "b.png").chmod(0)
    if os.access(tmp_path / "b.png", os.R_OK):
        pytest.skip("root reads a chmod-000 file (see test_the_permission_tests_also_run_for_root)")
    some = source_row(str(tmp_path))
    (tmp_path / "a.png").chmod(0)
    none = source_row(str(tmp_path))
    assert some.status == "WARN" and "1 not readable by you" in some.detail
    assert none.status == "FAIL" and "none of the 2 images" in none.detail
    (tmp_path / "b.png").unlink()
    assert source_row(str(tmp_path)).detail == f"the image in {tmp_path} is not readable by you"


@only_for_root_with_setpriv
def test_the_permission_tests_also_run_for_root() -> None:
    rerun_without_root_override(__file__, "unreadable_images")


def test_stream_sources_are_checked_for_a_host_that_answers() -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        up = source_row(f"rtsp://user:secret@127.0.0.1:{port}/stream")
        assert up.status == "PASS" and f"127.0.0.1:{port} takes connections" in up.detail
        assert source_row(f"http://127.0.0.1:{port}/video").status == "PASS"
    down = source_row(f"rtsp://user:secret@127.0.0.1:{port}/stream")
    assert down.status == "FAIL" and "cannot connect to" in down.detail
    assert "secret" not in down.detail and "camera is on" in down.fix


def test_display_fails_only_when_the_overlay_wants_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert doctor.check_display(cfg.Config())[0].status == "PASS"
    overlay = doctor.check_display(cfg.parse({"overlay": {"enabled": True}}))[0]
    assert overlay.status == "FAIL" and "[overlay] enabled = false" in overlay.fix


def test_web_view_address_is_checked_as_the_service_would_listen() -> None:
    import socket

    assert doctor.check_web(cfg.Config())[0].status == "SKIP"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (row,) = doctor.check_web(cfg.parse({"web": {"enabled": True, "bind": f"127.0.0.1:{port}"}}))
        assert row.status == "WARN" and "in use" in row.detail and "this service" in row.fix
    (row,) = doctor.check_web(cfg.parse({"web": {"enabled": True, "bind": f"127.0.0.1:{port}"}}))
    assert row.status == "PASS"
    # 192.0.2.1 (TEST-NET-1) is no address of this machine.
    (row,) = doctor.check_web(cfg.parse({"web": {"enabled": True, "bind": "192.0.2.1:8080",
                                                 "insecure": True}}))
    assert row.status == "FAIL" and row.fix == "use 0.0.0.0 or 127.0.0.1"


def test_a_model_cache_this_user_cannot_write_is_a_warning(tmp_path: Path) -> None:
    # Under setpriv when run as root, whom a read-only folder does not stop otherwise.
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o555)
    script = ("from edge_sdk import config, doctor; "
              f"rows = doctor.check_disk(config.parse({{'model': {{'home': {str(home)!r}}}}})); "
              "print(rows[0].status, rows[0].detail)")
    proc = python_without_root_override(script)
    home.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("WARN") and "not writable by this user" in proc.stdout


def test_temperature_from_thermal_zones(tmp_path: Path) -> None:
    # This machine may have no thermal zones; a folder laid out like /sys/class/thermal stands in.
    zone = tmp_path / "thermal_zone0"
    zone.mkdir()
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text("48312\n")
    assert doctor.read_temperatures(str(tmp_path)) == [("cpu-thermal", 48.312)]
    assert doctor.check_temperature(str(tmp_path))[0].status == "PASS"
    (zone / "temp").write_text("83000\n")
    hot = doctor.check_temperature(str(tmp_path))[0]
    assert hot.status == "FAIL" and "fan" in hot.fix
    assert doctor.check_temperature(str(tmp_path / "none"))[0].status == "SKIP"


def test_throttling_flags_of_a_pi() -> None:
    now, past = doctor.parse_throttled(0x50005)
    assert now == ["under-voltage", "throttled"]
    assert past == ["under-voltage", "throttling"]
    assert doctor.parse_throttled(0) == ([], [])

    # vcgencmd exists only on a Raspberry Pi; this stands in for its output format.
    def vcgencmd(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 0, stdout="throttled=0x50000\n", stderr="")

    past_only = doctor.check_throttling(run=vcgencmd, command="vcgencmd")[0]
    assert past_only.status == "WARN" and "since boot: under-voltage" in past_only.detail
    assert "power supply" in past_only.fix


def test_a_crashing_check_is_a_failure_row(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(config: cfg.Config) -> list[doctor.Check]:
        raise RuntimeError("kaput")

    monkeypatch.setattr(doctor, "check_disk", boom)
    rows = doctor.run_checks(cfg.parse({"source": {"uri": "test://"}}), speed_runs=0)
    disk = rows_by_name(rows)["disk"]
    assert disk.status == "FAIL" and "kaput" in disk.detail
    assert "failed" in doctor.format_table(rows).splitlines()[-1]
