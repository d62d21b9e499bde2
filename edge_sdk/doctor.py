"""`edge-classify doctor`: check this machine can run the service, and say how to fix what fails.

Each check returns `Check` rows: PASS, WARN (works, but worth a look), FAIL (the service will
not work as configured; the row carries the fix) or SKIP (does not apply here, e.g. a Pi's
throttling flags on a PC). Checks never raise: a check that crashes is itself a FAIL row.
"""

from __future__ import annotations

import glob
import grp
import importlib
import os
import platform
import pwd
import shutil
import ssl
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge_sdk import __version__, registry
from edge_sdk.config import Config, MqttConfig, missing_files
from edge_sdk.errors import ConfigError, EdgeSDKError
from edge_sdk.wording import many

Status = Literal["PASS", "WARN", "FAIL", "SKIP"]

#: The system user the unit runs as (systemd/edge-classify.service).
SERVICE_USER = "edge-sdk"

#: The file the unit's ``LoadCredential=mqtt-password:...`` makes the MQTT password credential of.
CREDENTIAL_SOURCE = Path("/etc/edge-sdk/mqtt-password")

#: Runtime registry name -> module to import to know it is installed.
RUNTIME_MODULES = {
    "litert": ("ai_edge_litert", "tflite_runtime"),
    "onnxruntime": ("onnxruntime",),
    "opencv": ("cv2",),
}

# vcgencmd get_throttled bits (Raspberry Pi firmware): now / since boot.
_THROTTLE_NOW = {0: "under-voltage", 1: "ARM frequency capped", 2: "throttled",
                 3: "soft temperature limit"}
_THROTTLE_PAST = {16: "under-voltage", 17: "ARM frequency capping", 18: "throttling",
                  19: "soft temperature limit"}


@dataclass(frozen=True)
class Check:
    """One row of the report."""

    name: str
    status: Status
    detail: str
    fix: str = ""


# -- cameras, display --------------------------------------------------------------------------


def camera_device(uri: str) -> str | None:
    """The /dev/videoN a source URI needs, or None if the source is not a V4L2 camera."""
    text = uri.strip()
    if text.isdigit():
        return f"/dev/video{int(text)}"
    if text.startswith("/dev/video"):
        return text
    if text.startswith("v4l2://"):
        rest = text[len("v4l2://"):]
        return f"/dev/video{int(rest)}" if rest.isdigit() else rest
    return None


def _user_groups(user: str) -> set[int]:
    info = pwd.getpwnam(user)
    return {info.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}


def check_cameras(config: Config, dev: str = "/dev") -> list[Check]:
    """Camera device nodes, whether this user and the service user may open them."""
    devices = sorted(glob.glob(os.path.join(dev, "video*")))
    wanted = camera_device(config.source.uri)
    uri = config.source.uri
    rows: list[Check] = []
    if not devices:
        if wanted:
            return [Check("camera", "FAIL", f"no camera devices ({dev}/video*); source is {uri!r}",
                          "plug in the camera (ls /dev/video*), or set [source] uri to a file, "
                          "rtsp://... or http://... stream")]
        if uri.startswith("csi://"):
            return [Check("camera", "SKIP", f"no V4L2 nodes; source {uri} uses libcamera/Argus")]
        return [Check("camera", "PASS", f"no camera devices; none needed (source {uri!r})")]
    rows.append(Check("camera", "PASS", "found " + ", ".join(devices)))
    if wanted and wanted not in devices:
        rows.append(Check("camera device", "FAIL", f"source {uri!r} needs {wanted}, which is absent",
                          f"set [source] uri to one of: {', '.join(devices)}"))
        wanted = None
    target = wanted or devices[0]
    st = os.stat(target)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    if os.access(target, os.R_OK | os.W_OK):
        rows.append(Check("camera access", "PASS", f"{target} (group {group}) is readable by you"))
    else:
        rows.append(Check("camera access", "FAIL", f"{target} (group {group}) is not readable by you",
                          f"sudo usermod -aG {group} $USER, then log in again"))
    try:
        in_group = st.st_gid in _user_groups(SERVICE_USER)
    except KeyError:
        rows.append(Check("service user", "SKIP", f"no user {SERVICE_USER!r} (service not installed)"))
    else:
        if in_group:
            rows.append(Check("service user", "PASS", f"{SERVICE_USER} is in group {group}"))
        else:
            rows.append(Check("service user", "FAIL", f"{SERVICE_USER} is not in group {group}",
                              f"sudo usermod -aG {group} {SERVICE_USER}"))
    return rows


#: Seconds doctor waits for a stream camera's host to take a TCP connection (the source's own
#: probe, `unreachable`, waits at most 1 s).
STREAM_CONNECT_S = 1.0


def check_source(config: Config) -> list[Check]:
    """Whether a file, image or stream source is there: the file readable, the folder or glob
    holding images, the stream's host taking connections. Cameras are `check_cameras`'s; the
    stream itself (path, login, codec) is checked only when a run opens it."""
    from edge_sdk.sources import route, source_class
    from edge_sdk.sources.base import file_path, hide_password, host_port
    from edge_sdk.sources.images import list_images
    from edge_sdk.sources.rtsp import DEFAULT_PORT, unreachable

    uri = config.source.uri.strip()
    options = config.source.options
    kind = route(uri, options)
    path = file_path(uri)
    fix = "set [source] uri (or --source) to one that exists"
    if kind == "image" and options.get("watch"):
        return [_watched_folder_check(path)]
    if kind == "image":
        try:
            found = list_images(path)
        except EdgeSDKError as exc:
            return [Check("source", "FAIL", str(exc), fix)]
        unreadable = [f for f in found if not os.access(f, os.R_OK)]
        if len(unreadable) == len(found):
            what = (f"the image in {path} is not readable by you" if len(found) == 1
                    else f"none of the {len(found)} images in {path} is readable by you")
            return [Check("source", "FAIL", what, "chmod/chown them for the user running edge-classify")]
        detail = f"{many(len(found), 'image')} in {path}"
        if unreadable:
            return [Check("source", "WARN", f"{detail}, {len(unreadable)} not readable by you (they "
                          "are skipped)", "chmod/chown them for the user running edge-classify")]
        return [Check("source", "PASS", detail)]
    if kind == "file":
        if not os.path.isfile(path):
            what = "is not a file" if os.path.exists(path) else "does not exist"
            return [Check("source", "FAIL", f"the video file {path} {what}", fix)]
        if not os.access(path, os.R_OK):
            return [Check("source", "FAIL", f"the video file {path} is not readable by you",
                          "chmod/chown it for the user running edge-classify")]
        return [Check("source", "PASS", f"video file {path}")]
    if kind in ("rtsp", "rtsps", "http", "https"):
        parts = source_class(uri).check_uri(uri)
        default = {"http": 80, "https": 443}.get(kind, DEFAULT_PORT)
        host, port = str(parts.hostname), parts.port or default
        reason = unreachable(host, port, STREAM_CONNECT_S)
        if reason:
            return [Check("source", "FAIL", f"stream {hide_password(uri)}{reason}",
                          "check that the camera is on and on this network, and its address and port")]
        return [Check("source", "PASS", f"{host_port(host, port)} takes connections (the stream "
                      "itself is checked when a run opens it)")]
    return []


def _watched_folder_check(path: str) -> Check:
    """A watched folder may be empty (it waits for images); it must be there to be watched."""
    from edge_sdk.sources.images import glob_folder, image_files, is_glob

    folder = glob_folder(path) if is_glob(path) and not os.path.isdir(path) else path
    if not os.path.isdir(folder):
        return Check("source", "FAIL", f"the watched folder {folder} does not exist",
                     "create it (or mount its disk), or set [source] uri to the folder to watch")
    if not os.access(folder, os.R_OK | os.X_OK):
        return Check("source", "FAIL", f"the watched folder {folder} cannot be listed by you",
                     "chmod/chown it for the user running edge-classify")
    count = len(image_files(path, folder=folder == path))
    return Check("source", "PASS", f"watching {path}: {many(count, 'image')} "
                 "there now")


def check_web(config: Config) -> list[Check]:
    """Whether the web view's address can be listened on (the service would fail at start)."""
    if not config.web.enabled:
        return [Check("web view", "SKIP", "[web] is not enabled")]
    import errno

    from edge_sdk.web.access import BindAddress
    from edge_sdk.web.server import bind_error, listen_problem

    bind = BindAddress.parse(config.web.bind)
    problem = listen_problem(bind)
    if problem is None:
        return [Check("web view", "PASS", f"{bind} is free to listen on")]
    if problem.errno == errno.EADDRINUSE:
        return [Check("web view", "WARN", f"{bind} is in use",
                      "fine if it is this service running; else choose another [web] bind port")]
    return [Check("web view", "FAIL", f"cannot listen on {bind}",
                  bind_error(bind, problem).partition("; ")[2] or "check [web] bind")]


def check_display(config: Config) -> list[Check]:
    from edge_sdk.sinks.overlay import display_problem

    problem = display_problem()
    if problem is None:
        shown = os.environ.get("WAYLAND_DISPLAY") or os.environ.get("DISPLAY")
        return [Check("display", "PASS", f"reachable ({shown})")]
    if config.overlay.enabled:
        return [Check("display", "FAIL", f"{problem}; [overlay] is enabled",
                      "set [overlay] enabled = false and use the web view ([web])")]
    return [Check("display", "PASS", f"headless: {problem} (the overlay is off; use the web view)")]


# -- runtimes and model ------------------------------------------------------------------------


def _importable(modules: Iterable[str]) -> tuple[str, str] | None:
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return name, str(getattr(module, "__version__", "") or "")
    return None


def check_runtimes(config: Config) -> list[Check]:
    rows = []
    for name, modules in RUNTIME_MODULES.items():
        found = _importable(modules)
        chosen = name == config.model.runtime
        if found:
            detail = f"{found[0]} {found[1]}".strip()
            if name == "onnxruntime":
                # Imported only now: the runtime module needs onnxruntime, just found.
                from edge_sdk.runtimes.onnxruntime import x86_without_vnni

                if x86_without_vnni():
                    detail += "; x86 without VNNI: 8-bit int8 weights run as uint8 (exact, about 2x slower)"
            rows.append(Check(f"runtime {name}", "PASS", detail))
        else:
            hint = registry.PIP_HINTS.get(modules[0], f"pip install {modules[0]}")
            rows.append(Check(f"runtime {name}", "FAIL" if chosen else "SKIP",
                              f"not installed{' (the configured runtime)' if chosen else ''}",
                              hint if chosen else ""))
    return rows


def _speed(clf: Any, runs: int) -> tuple[float, float]:
    import numpy as np

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    for _ in range(2):
        clf.classify(frame)
    total, infer = [], []
    for _ in range(runs):
        start = time.perf_counter()
        prediction = clf.classify(frame)
        total.append((time.perf_counter() - start) * 1e3)
        infer.append(prediction.timings.inference)
    return statistics.median(total), statistics.median(infer)


def check_model(config: Config, *, runs: int = 10) -> list[Check]:
    """Load the configured model on every installed runtime that has it; time it on a 720p frame."""
    from edge_sdk.classifier import Classifier

    m = config.model
    rows = []
    per_frame: dict[str, float] = {}
    for name, modules in RUNTIME_MODULES.items():
        chosen = name == m.runtime
        if not chosen and (runs == 0 or _importable(modules) is None):
            continue
        what = f"model on {name}"
        try:
            clf = Classifier.from_model(
                m.name, runtime=name, precision=m.precision, num_threads=m.threads or None,
                top_k=m.top_k, home=m.home or None, mirror=m.mirror or None,
            )
        except EdgeSDKError as exc:
            rows.append(Check(what, "FAIL" if chosen else "SKIP", str(exc).split("; ")[0],
                              _fix_from(str(exc)) if chosen else ""))
            continue
        with clf:
            if runs == 0:
                rows.append(Check(what, "PASS", f"{m.name} ({m.precision}) loads"))
                continue
            total, infer = _speed(clf, runs)
        per_frame[name] = total
        threads = many(m.threads, "thread") if m.threads else "auto threads"
        rows.append(Check(what, "PASS", f"{m.name} ({m.precision}, {threads}): "
                          f"{total:.1f} ms per 720p frame ({infer:.1f} ms inference), "
                          f"~{1000 / total:.0f} fps"))
    return rows + _faster_runtime(m.runtime, per_frame)


#: How much faster another runtime must be for the report to suggest it: within this, a few
#: timed frames on a busy machine do not tell two runtimes apart.
_SUGGEST_RATIO = 1.2


def _faster_runtime(chosen: str, per_frame: dict[str, float]) -> list[Check]:
    """A WARN row naming the runtime that classified fastest, when clearly ahead of `chosen`.

    Which one wins depends on the CPU, not only on the board's family: on x86 without VNNI,
    XNNPACK's int8 runs no faster than its float and onnxruntime comes out ahead of LiteRT.
    """
    if chosen not in per_frame:
        return []
    best = min(per_frame, key=per_frame.__getitem__)
    ratio = per_frame[chosen] / per_frame[best]
    if ratio < _SUGGEST_RATIO:
        return []
    return [Check("runtime choice", "WARN",
                  f"{best} classifies this model {ratio:.1f}x as fast as the configured {chosen} "
                  f"on this machine ({per_frame[best]:.1f} against {per_frame[chosen]:.1f} ms)",
                  f'set [model] runtime = "{best}" (or run with --runtime {best})')]


def _fix_from(message: str) -> str:
    # EdgeSDKError messages end with their fix after the last "; ".
    return message.rsplit("; ", 1)[-1] if "; " in message else "see the message"


# -- MQTT --------------------------------------------------------------------------------------


def mqtt_password(
    q: MqttConfig, credential_source: Path = CREDENTIAL_SOURCE
) -> tuple[str | None, str]:
    """The password the service logs in to the broker with, and where it comes from.

    The service's order (`MqttSink`): `password_file`, else the systemd credential
    ``mqtt-password`` in $CREDENTIALS_DIRECTORY. doctor mostly runs from a shell, where systemd
    hands out no credentials; then it reads the file the unit loads the credential from, so
    it tries the login the service will make instead of one without a password.

    Args:
        q: The [mqtt] table (its `username` is set).
        credential_source: The file behind the unit's ``LoadCredential=mqtt-password:``.

    Returns:
        (the password or None for none, where it was found, for messages).

    Raises:
        ConfigError: the password file is there but this user cannot read it, or it is empty
            or not text; the message says how to run doctor so that it can.
    """
    from edge_sdk.secrets import MQTT_PASSWORD_CREDENTIAL, credential_path, read_secret

    if q.password_file:
        path, what = Path(q.password_file), "the MQTT password_file"
        fix = (f"make it readable by the service user (sudo chown {SERVICE_USER} {path}, mode "
               f"0600), then run doctor as that user (sudo -u {SERVICE_USER} edge-classify doctor)")
    elif (cred := credential_path(MQTT_PASSWORD_CREDENTIAL)) is not None:
        path, what = cred, f"the systemd credential {MQTT_PASSWORD_CREDENTIAL}"
        fix = "check the unit's LoadCredential= line"
    elif credential_source.exists():
        path = credential_source
        what = f"the file of the unit's credential {MQTT_PASSWORD_CREDENTIAL}"
        # systemd reads it as root and hands a copy to the service: it is meant to be 0600 root.
        fix = ("run doctor as root (sudo edge-classify doctor), which reads it as systemd does, "
               "or set [mqtt] password_file to a file you can read")
    else:
        return None, "without a password"
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        try:
            user = f"user {pwd.getpwuid(os.geteuid()).pw_name}"
        except KeyError:  # a uid without a passwd entry (containers)
            user = f"uid {os.geteuid()}"
        raise ConfigError(f"cannot read the MQTT password: {what} {str(path)!r} is not readable by "
                          f"{user}, so the login was not tried; {fix}") from None
    except OSError:
        pass  # missing, a folder, ...: read_secret says so, as it does to the service
    return read_secret(path, what), f"with the password from {what} {str(path)!r}"


def check_broker(
    config: Config, timeout: float = 5.0, *, credential_source: Path = CREDENTIAL_SOURCE
) -> list[Check]:
    """Connect to the configured broker with the service's credentials and TLS, then leave.

    Args:
        config: The config; [mqtt] says where and how.
        timeout: Seconds to wait for the broker's CONNACK.
        credential_source: Where the unit's mqtt-password credential comes from (see
            `mqtt_password`).
    """
    q = config.mqtt
    if not q.enabled:
        return [Check("mqtt broker", "SKIP", "[mqtt] is not enabled")]
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    tls = q.tls or bool(q.ca_file or q.certfile)
    port = q.port or (8883 if tls else 1883)
    where = f"{q.host}:{port}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"edge-sdk-doctor-{os.getpid()}",
                         protocol=mqtt.MQTTv5 if q.protocol == "5" else mqtt.MQTTv311)
    password_from = ""
    try:
        if q.username:
            password, password_from = mqtt_password(q, credential_source)
            client.username_pw_set(q.username, password)
        if tls:
            client.tls_set(ca_certs=q.ca_file or None, certfile=q.certfile or None,
                           keyfile=q.keyfile or None)
    except (EdgeSDKError, ssl.SSLError, OSError) as exc:
        return [Check("mqtt broker", "FAIL", str(exc).split("; ")[0], _fix_from(str(exc)))]
    done = threading.Event()
    result: dict[str, Any] = {}

    def on_connect(c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        result["reason"] = reason
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(q.host, port, keepalive=10)
    except ssl.SSLCertVerificationError as exc:
        return [Check("mqtt broker", "FAIL", f"{where}: TLS certificate not trusted ({exc.verify_message})",
                      "set [mqtt] ca_file to the CA certificate that signed the broker's")]
    except (OSError, ssl.SSLError) as exc:
        from edge_sdk.sinks.mqtt_reach import why_unreachable

        # paho's own exception says little ("Connection reset by peer" for a TLS client on a
        # plain port); the probe says which step fails.
        problem, _, fix = why_unreachable(q.host, port, tls=tls).partition("; ")
        return [Check("mqtt broker", "FAIL", f"{where} unreachable: {problem or exc}",
                      fix or "is the broker running and listening there? check [mqtt] host/port "
                      "and the firewall")]
    client.loop_start()
    try:
        if not done.wait(timeout):
            return [Check("mqtt broker", "FAIL", f"{where}: no answer to CONNECT in {timeout:g} s",
                          "check [mqtt] port and tls (a TLS port needs tls = true)")]
    finally:
        client.disconnect()
        client.loop_stop()
    reason = result["reason"]
    user = f" as {q.username!r}" if q.username else " anonymously"
    if reason.is_failure:
        if not q.username:
            fix = "set [mqtt] username (and its password): the broker wants a login"
        elif password_from == "without a password":
            fix = (f"set [mqtt] password_file, or write the password to {credential_source} "
                   "(the unit's mqtt-password credential)")
        else:
            fix = "check [mqtt] username and that password"
        login = f"{user} {password_from}" if password_from else user
        return [Check("mqtt broker", "FAIL", f"{where} refused the login{login}: {reason}", fix)]
    return [Check("mqtt broker", "PASS", f"connected to {where}{user}{' over TLS' if tls else ''}")]


# -- system ------------------------------------------------------------------------------------


def check_disk(config: Config) -> list[Check]:
    from edge_sdk.models.store import home_dir

    rows = []
    home = Path(config.model.home) if config.model.home else home_dir()
    seen = set()
    for label, path in (("model cache", home), ("root filesystem", Path("/"))):
        probe = path
        while not probe.exists():
            probe = probe.parent
        usage = shutil.disk_usage(probe)
        if usage.free in seen:
            continue
        seen.add(usage.free)
        free_mb = usage.free / 2**20
        detail = f"{label} ({probe}): {free_mb:,.0f} MB free"
        if label == "model cache" and not os.access(probe, os.W_OK):
            # Running a built model only reads the cache; building one writes it.
            rows.append(Check("disk", "WARN", f"{detail}, not writable by this user",
                              "chmod/chown it, or set EDGE_SDK_HOME, before building models"))
        elif free_mb < 100:
            rows.append(Check("disk", "FAIL", detail, "free some space (journalctl --vacuum-size=50M, "
                              "apt clean) or use a larger SD card"))
        elif free_mb < 500:
            rows.append(Check("disk", "WARN", detail, "free some space soon"))
        else:
            rows.append(Check("disk", "PASS", detail))
    return rows


def read_temperatures(thermal: str = "/sys/class/thermal") -> list[tuple[str, float]]:
    """(zone type, degrees C) for every thermal zone the kernel exposes."""
    found = []
    for zone in sorted(glob.glob(os.path.join(thermal, "thermal_zone*"))):
        try:
            millideg = int(Path(zone, "temp").read_text().strip())
            kind = Path(zone, "type").read_text().strip() if Path(zone, "type").exists() else zone
        except (OSError, ValueError):
            continue
        found.append((kind, millideg / 1000))
    return found


def check_temperature(thermal: str = "/sys/class/thermal") -> list[Check]:
    temps = read_temperatures(thermal)
    if not temps:
        return [Check("cpu temperature", "SKIP", "no thermal zones here")]
    kind, hottest = max(temps, key=lambda t: t[1])
    detail = f"{hottest:.1f} °C ({kind})"
    if hottest >= 80:
        return [Check("cpu temperature", "FAIL", detail + ": the CPU throttles at 80-85 °C",
                      "add a heatsink or fan, improve airflow")]
    if hottest >= 70:
        return [Check("cpu temperature", "WARN", detail, "consider a heatsink or fan")]
    return [Check("cpu temperature", "PASS", detail)]


def parse_throttled(value: int) -> tuple[list[str], list[str]]:
    """Split `vcgencmd get_throttled` bits into (happening now, happened since boot)."""
    now = [text for bit, text in _THROTTLE_NOW.items() if value & (1 << bit)]
    past = [text for bit, text in _THROTTLE_PAST.items() if value & (1 << bit)]
    return now, past


def check_throttling(
    run: Callable[..., Any] = subprocess.run, command: str | None = None
) -> list[Check]:
    """Raspberry Pi firmware flags; skipped where there is no vcgencmd.

    Args:
        run: How to run the command (`subprocess.run`).
        command: The vcgencmd executable; default: found on PATH.
    """
    command = command or shutil.which("vcgencmd")
    if command is None:
        return [Check("throttling", "SKIP", "no vcgencmd (not a Raspberry Pi)")]
    try:
        out = run([command, "get_throttled"], capture_output=True, text=True, timeout=5).stdout
        value = int(out.strip().split("=")[1], 16)
    except (OSError, ValueError, IndexError, subprocess.SubprocessError) as exc:
        return [Check("throttling", "WARN", f"vcgencmd get_throttled failed: {exc}",
                      "add the service user to the video group (vcgencmd needs /dev/vchiq)")]
    now, past = parse_throttled(value)
    power = "use the official power supply (5 V 3 A for a Pi 4, 5 A for a Pi 5) and a short cable"
    if now:
        return [Check("throttling", "FAIL", f"now: {', '.join(now)} (0x{value:x})",
                      power if "under-voltage" in now else "add a heatsink or fan")]
    if past:
        return [Check("throttling", "WARN", f"since boot: {', '.join(past)} (0x{value:x})", power)]
    return [Check("throttling", "PASS", "no under-voltage or throttling since boot")]


def check_config_files(config: Config) -> list[Check]:
    where = config.path or "defaults (no config file)"
    problems = missing_files(config)
    if problems:
        return [Check("config", "FAIL", p.rsplit("; ", 1)[0], _fix_from(p)) for p in problems]
    return [Check("config", "PASS", f"{where} is valid")]


def check_mqtt_spool(config: Config) -> list[Check]:
    """What the MQTT spool holds (from the last run, or checkpoints), and whether it can be written."""
    q = config.mqtt
    if not q.enabled:
        return []  # the broker row already says [mqtt] is off
    if not q.spool:
        return [Check("mqtt spool", "SKIP", "[mqtt] spool is empty: a stop while the broker is "
                      "away drops what is queued")]
    from edge_sdk.errors import ConfigError
    from edge_sdk.sinks.mqtt_spool import MqttSpool

    try:
        spool = MqttSpool(q.spool)
    except ConfigError as exc:
        return [Check("mqtt spool", "FAIL", str(exc).split("; ")[0], _fix_from(str(exc)))]
    rows = []
    holder = spool.holder()
    if holder is not None:
        by = f"process {holder}" if holder else "another process"
        rows.append(Check("mqtt spool", "PASS", f"{spool.path} is in use by a running MQTT sink "
                          f"({by}); another sink on it would be refused"))
    try:
        held = spool.path.read_bytes().count(b"\n")
    except FileNotFoundError:
        rows.append(Check("mqtt spool", "PASS", f"{spool.path}: nothing waiting for the broker"))
    except OSError as exc:
        rows.append(Check("mqtt spool", "FAIL", f"{spool.path}: cannot read it ({exc.strerror})",
                          "chown it to the service user, or move it away"))
    else:
        # From the last run, or a running sink's checkpoints during an outage.
        then = "sent first at the next start" if holder is None else "checkpointed by that sink"
        rows.append(Check("mqtt spool", "PASS", f"{spool.path} holds {many(held, 'prediction')} the broker "
                          f"has not acknowledged, {then}"))
    if spool.aside.exists():
        rows.append(Check("mqtt spool", "WARN", f"{spool.aside} holds a spool that was set aside as "
                          "damaged", "look at it (its good lines were sent), then remove it"))
    return rows


# -- all ---------------------------------------------------------------------------------------


def run_checks(config: Config, *, speed_runs: int = 10) -> list[Check]:
    """Run every check in order; a check that crashes becomes a FAIL row naming the error."""
    rows = [Check("edge-sdk", "PASS", f"{__version__} on Python {platform.python_version()}, "
                  f"{platform.machine()}")]
    checks: list[tuple[str, Callable[[], list[Check]]]] = [
        ("config", lambda: check_config_files(config)),
        ("camera", lambda: check_cameras(config)),
        ("source", lambda: check_source(config)),
        ("display", lambda: check_display(config)),
        ("runtimes", lambda: check_runtimes(config)),
        ("model", lambda: check_model(config, runs=speed_runs)),
        ("mqtt broker", lambda: check_broker(config)),
        ("mqtt spool", lambda: check_mqtt_spool(config)),
        ("web view", lambda: check_web(config)),
        ("disk", lambda: check_disk(config)),
        ("cpu temperature", check_temperature),
        ("throttling", check_throttling),
    ]
    for name, check in checks:
        try:
            rows.extend(check())
        except Exception as exc:  # noqa: BLE001 - the report must go on
            rows.append(Check(name, "FAIL", f"the check itself failed: {exc.__class__.__name__}: {exc}",
                              "report this as a bug"))
    return rows


def format_table(rows: list[Check]) -> str:
    """The report: one line per check, each failure followed by its fix."""
    width = max(len(r.name) for r in rows)
    lines = []
    for r in rows:
        lines.append(f"{r.status:4}  {r.name:<{width}}  {r.detail}")
        if r.fix and r.status in ("FAIL", "WARN"):
            lines.append(f"{'':4}  {'':<{width}}  fix: {r.fix}")
    failed = sum(r.status == "FAIL" for r in rows)
    warned = sum(r.status == "WARN" for r in rows)
    lines.append(f"{failed} failed, {many(warned, 'warning')}, "
                 f"{sum(r.status == 'PASS' for r in rows)} passed")
    return "\n".join(lines)
