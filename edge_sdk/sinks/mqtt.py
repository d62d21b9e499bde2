"""MQTT sink: predictions as JSON to a broker, with a retained status, last will and HA discovery.

Topics (``{prefix}`` defaults to ``edge-sdk``):

* ``{prefix}/{device_id}/prediction``: one `Prediction.to_dict()` JSON object per published
  prediction (see docs/mqtt.md for the schema), at the configured QoS, not retained.
* ``{prefix}/{device_id}/status``: retained ``online`` once connected; ``offline`` on a clean stop
  and, through the last will, when the connection dies (power cut, kill -9, network loss).
* ``homeassistant/sensor/{device_id}/.../config``: Home Assistant discovery (`edge_sdk.mqtt_discovery`).

Delivery: paho-mqtt's network thread (``loop_start``) connects, reconnects with capped exponential
backoff and resends. QoS 1/2 predictions wait in this sink's backlog, bounded at `queue_size`
(what does not fit is counted and logged), and enter paho's outgoing queue at most `_WINDOW` at a
time: after a reconnect paho sends everything it holds at once, ignoring its own in-flight limit
(eclipse-paho/paho.mqtt.python#492), and a broker drops what exceeds its quota without a word to
an MQTT 3.1.1 client (mosquitto: 20 unfinished QoS 2 messages). They enter it only while
connected, and after a reconnect only once paho has resent what it held: paho sends a new message
at once on an open socket, even before the CONNACK, ahead of older ones. `publish` never waits on the
network. `close` delivers what is left within `close_timeout`, on a new connection if paho's is
down, and counts what still is not acknowledged in `dropped`.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import json
import logging
import os
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_sdk.checks import check_int, check_number
from edge_sdk.errors import ConfigError
from edge_sdk.mqtt_discovery import (
    DEFAULT_DISCOVERY_PREFIX,
    OFFLINE,
    ONLINE,
    discovery_messages,
)
from edge_sdk.secrets import MQTT_PASSWORD_CREDENTIAL, credential_path, read_secret
from edge_sdk.sinks.closable import ClosableSink
from edge_sdk.sinks.mqtt_policy import PublishPolicy
from edge_sdk.sinks.mqtt_reach import why_unreachable
from edge_sdk.sinks.mqtt_spool import MqttSpool
from edge_sdk.types import Frame, Prediction
from edge_sdk.wording import many

log = logging.getLogger("edge_sdk.mqtt")

# CONNACK reasons that retrying with the same settings will not fix; worth an ERROR line.
_AUTH_REASONS = ("Bad user name or password", "Not authorized", "Client identifier not valid")
_REPEAT_LOG_EVERY = 10.0  # seconds between repeated overflow (or refusal) lines
_PREDICTION, _CONTROL = "prediction", "control"
_EARLY_LIMIT = 256
# Predictions handed to paho and not yet acknowledged: under mosquitto's default QoS 2 quota of
# 20 with room to spare, and still 10 per round trip, far above a camera's prediction rate.
_WINDOW = 10
# Room in paho's queue for control messages (status, discovery) next to a full window.
_PAHO_QUEUE = _WINDOW + 64
_MAX_PAYLOAD = 268_435_455  # MQTT's limit, which paho enforces by raising ValueError
# Below this many seconds left, close() makes no last connection attempt: it could not finish.
_MIN_LAST_ATTEMPT_S = 0.05
# A connection lost this soon after it was made, _QUICK_DROPS times in a row, suggests a second
# client with the same client id.
_QUICK_DROP_S = 3.0
_QUICK_DROPS = 3
# URL schemes that say the broker speaks TLS.
_TLS_SCHEMES = ("mqtts", "ssl", "tls")


def _is_host(host: str) -> bool:
    """True for an IP address (IPv6 with or without a zone) or a plausible host name."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    # Letters include non-ASCII ones: socket.getaddrinfo encodes an internationalized name.
    return bool(host) and not host.startswith(("-", ".")) and all(c.isalnum() or c in "-._" for c in host)


def _encodes(host: str) -> bool:
    """Whether the resolver can take the name: each label 1-63 characters once IDNA-encoded.

    A name that fails here ("a..b", a 64-character label) makes paho's network thread die on
    an exception it does not catch, and the sink would never connect nor say why.
    """
    try:
        host.encode("idna")
    except UnicodeError:
        return False
    return True


def check_broker_host(host: str) -> None:
    """Refuse a broker host that is not a bare host name or IP address.

    paho takes ``host`` as a name to look up, so a URL (``mqtt://broker:1883``), ``host:port``
    or ``[::1]`` would fail the lookup and be retried forever. IPv6 literals (``::1``,
    ``fe80::1%eth0``) are addresses and pass. Shared with the service config's checks.

    Raises:
        TypeError: `host` is not a string.
        ValueError: `host` is empty, or has a scheme, port, brackets, user name or characters no
            host name has; the message says what to give instead.
    """
    if not isinstance(host, str):
        raise TypeError(f"host must be a string (the broker's host name or address), got {host!r} "
                        f"({type(host).__name__})")
    if _is_host(host):
        if not _encodes(host):
            raise ValueError(
                f"host {host!r} is not a valid host name: each dot-separated part must be 1-63 "
                "characters (no '..'); check the spelling"
            )
        return
    if not host.strip():
        raise ValueError("host must be the broker's host name or address, e.g. 'localhost'")
    hint = ""
    try:
        parts = urlsplit(host if "://" in host else f"//{host}")
        name, port, user, scheme = parts.hostname, parts.port, parts.username, parts.scheme
    except ValueError:  # an unclosed IPv6 bracket, a port that is no number
        name = None
    if name and _is_host(name):
        fix = [f"host={name!r}"] + ([f"port={port}"] if port else []) + (
            [f"username={user!r}"] if user else []) + (["tls=True"] if scheme in _TLS_SCHEMES else [])
        hint = f" (here: {', '.join(fix)})"
    raise ValueError(
        f"host {host!r} must be the broker's host name or IP address only{hint}: the port goes in "
        "port=, and mqtts:// means tls=True"
    )


def _check_text(name: str, value: Any, *, optional: bool = True) -> None:
    """Refuse an option that must be a string (or None, when `optional`) with a TypeError."""
    if not isinstance(value, str) and not (optional and value is None):
        kind = "a string or None" if optional else "a string"
        raise TypeError(f"{name} must be {kind}, got {value!r} ({type(value).__name__})")


#: Longest topic part accepted: topics are at most 65,535 bytes, and a part this long is a slip.
_MAX_TOPIC_PART = 256


def check_topic_part(name: str, value: str, *, slashes: bool) -> None:
    """Refuse a topic part MQTT cannot route or brokers refuse: empty, a wildcard, a control
    character, "/" unless `slashes` (and with it an empty level: a leading, trailing or double
    "/", or a "$" first level, which is the broker's), or longer than 256 characters. Shared
    with the service config's checks.

    Raises:
        TypeError: `value` is not a string.
        ValueError: naming the part and what it may not contain.
    """
    _check_text(name, value, optional=False)
    allowed = "" if slashes else ", '/'"
    if (not value or any(c in value for c in "+#") or (not slashes and "/" in value)
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)):
        raise ValueError(f"{name} {value!r} must be non-empty without '+', '#'{allowed} or control "
                         "characters")
    if slashes and value.startswith("$"):  # a first level of $SYS/...: the broker's own topics
        raise ValueError(f"{name} {value!r} must not start with '$': such topics belong to the broker")
    if slashes and "" in value.split("/"):
        raise ValueError(f"{name} {value!r} has an empty topic level; drop the leading, trailing or "
                         "double '/'")
    if len(value) > _MAX_TOPIC_PART:
        raise ValueError(f"{name} is {len(value)} characters long; keep it under {_MAX_TOPIC_PART}")


def _stop_loop(client: mqtt.Client) -> threading.Thread:
    """Stop paho's network thread from a helper thread, and return the helper to wait on.

    ``loop_stop`` joins paho's thread with no timeout, and that thread may be asleep in a
    reconnect backoff (a second at a time) or inside a connect (up to its connect_timeout):
    from a helper, `MqttSink.close` keeps its own deadline.
    """

    def stop() -> None:
        # paho clears its thread attribute as the thread ends, which loop_stop's join can race.
        with contextlib.suppress(AttributeError):
            client.loop_stop()

    thread = threading.Thread(target=stop, name="mqtt-stop", daemon=True)
    thread.start()
    return thread


def _published(info: mqtt.MQTTMessageInfo) -> bool:
    """Whether the broker acknowledged the message (False for one paho refused)."""
    try:
        return bool(info.is_published())
    except (RuntimeError, ValueError):
        return False


#: MQTT versions the sink speaks: 5 by default; "3.1.1" for brokers without MQTT 5.
PROTOCOLS = ("5", "3.1.1")


def _refusal_fix(reason: str, topic: str, username: str | None) -> str:
    """What to do about a broker's refusal of a message, for the log line."""
    if "authorized" in reason.lower():
        who = f"user {username!r}" if username else "anonymous clients"
        return f"allow {who} to publish to {topic} in the broker's ACL"
    if "large" in reason.lower() or "quota" in reason.lower():
        return "raise the broker's max_packet_size (or message_size_limit)"
    return "check the broker's log for why"


def default_device_id() -> str:
    """The host name, which is what a user calls the board."""
    return socket.gethostname().split(".")[0] or "edge-sdk"


class MqttSink(ClosableSink):
    """Publishes predictions to an MQTT broker without ever losing an accepted one quietly.

    All arguments are keyword-only options (the names used by the `[mqtt]` config table).

    Args:
        host: Broker host name or address.
        port: Broker port; default 8883 with TLS, else 1883.
        device_id: This device's id in topics; default the host name.
        prefix: First topic level.
        qos: 0, 1 or 2. QoS 1 (default) survives broker restarts and network outages.
        on_change: Publish only when the top label changes (see `PublishPolicy`).
        hysteresis: Predictions in a row a new label needs before it counts as a change.
        min_interval: Seconds between two change publications.
        interval: Publish every N seconds (0: off); combined with `on_change` it is a heartbeat.
        tls: Use TLS (implied by `ca_file` or `certfile`); without `ca_file`, the system's CAs.
        ca_file: CA certificate(s) to verify the broker with (PEM).
        certfile: Client certificate (PEM), for brokers that authenticate clients by certificate.
        keyfile: The client certificate's private key (PEM).
        username: Broker user name.
        password_file: File whose first line is the password. Without it, a `username` takes the
            password from the systemd credential ``mqtt-password`` when the service has one.
        keepalive: Seconds between keep-alive pings; the broker declares the device offline
            (last will) after 1.5 times this without traffic.
        queue_size: Predictions kept while unacknowledged (broker away, slow link); more are
            counted as overflow and logged.
        discovery: Publish Home Assistant discovery configs.
        discovery_prefix: Home Assistant's discovery prefix.
        reconnect_min: First reconnect delay in seconds; it doubles on each failure...
        reconnect_max: ...up to this.
        close_timeout: Seconds `close` takes at most to deliver what is queued (on one last new
            connection when disconnected) and the `offline` status; what is left is `dropped`,
            or kept in `spool`.
        spool: A file where `close` keeps what it could not deliver, and from which the next
            sink on it sends that first (see `edge_sdk.sinks.mqtt_spool`); None: no spool.
            Needs QoS 1 or 2.
        spool_every: Seconds between the spool's checkpoints while predictions wait for the
            broker: a power cut loses at most about this much of them.

    Raises:
        TypeError: an option of the wrong type (``port="1883"``, ``host=5``).
        ValueError: an option is out of range, `host` is a URL or ``host:port`` (see
            `check_broker_host`), or a topic part contains MQTT wildcards.
        ConfigError: a TLS or password file is missing or unreadable.
    """

    #: The pipeline hands this sink every prediction through a bounded FIFO, never dropping one.
    lossless = True

    def __init__(
        self,
        *,
        host: str = "localhost",
        port: int | None = None,
        device_id: str | None = None,
        prefix: str = "edge-sdk",
        qos: int = 1,
        on_change: bool = False,
        hysteresis: int = 3,
        min_interval: float = 1.0,
        interval: float = 0.0,
        tls: bool = False,
        ca_file: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        username: str | None = None,
        password_file: str | None = None,
        keepalive: int = 30,
        queue_size: int = 1000,
        discovery: bool = True,
        discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX,
        reconnect_min: float = 1.0,
        reconnect_max: float = 15.0,
        close_timeout: float = 1.5,
        protocol: str = "5",
        spool: str | os.PathLike[str] | None = None,
        spool_every: float = 5.0,
    ) -> None:
        check_broker_host(host)
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(map(repr, PROTOCOLS))}, got {protocol!r}")
        if port is not None:
            check_int("port", port, low=1, high=65535)
        if check_int("qos", qos) not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos!r}")
        check_int("keepalive", keepalive, low=5, high=65535)  # MQTT sends it in 16 bits
        check_int("queue_size", queue_size, low=1)
        for name, flag in (("on_change", on_change), ("tls", tls), ("discovery", discovery)):
            if not isinstance(flag, bool):  # "false" would be true
                raise TypeError(f"{name} must be True or False, got {flag!r} ({type(flag).__name__})")
        check_number("reconnect_min", reconnect_min, low=0, low_open=True)
        check_number("reconnect_max", reconnect_max, low=0, low_open=True)
        if reconnect_min > reconnect_max:
            raise ValueError(
                f"need 0 < reconnect_min <= reconnect_max, got {reconnect_min}, {reconnect_max}"
            )
        check_number("close_timeout", close_timeout, low=0)
        for name, value in (("device_id", device_id), ("ca_file", ca_file), ("certfile", certfile),
                            ("keyfile", keyfile), ("username", username),
                            ("password_file", password_file)):
            _check_text(name, value)
        if keyfile and not certfile:
            raise ValueError("keyfile needs certfile (the client certificate)")
        if spool is not None and not isinstance(spool, (str, os.PathLike)):
            raise TypeError(f"spool must be a file path, got {spool!r} ({type(spool).__name__})")
        if spool and qos == 0:
            raise ValueError("spool needs qos 1 or 2: QoS 0 sends once and keeps nothing")
        check_number("spool_every", spool_every, low=0.1, high=3600)
        device_id = device_id or default_device_id()
        check_topic_part("device_id", device_id, slashes=False)
        check_topic_part("prefix", prefix, slashes=True)
        check_topic_part("discovery_prefix", discovery_prefix, slashes=True)
        self.policy = PublishPolicy(
            on_change=on_change, hysteresis=hysteresis, min_interval=min_interval, interval=interval
        )
        self.host = host
        self.tls = bool(tls or ca_file or certfile)
        self.port = port or (8883 if self.tls else 1883)
        #: host:port for messages ([host]:port for an IPv6 address).
        self.address = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        self.device_id = device_id
        self.qos = qos
        self.queue_size = queue_size
        self.close_timeout = float(close_timeout)
        self.prefix = prefix
        self.prediction_topic = f"{prefix}/{device_id}/prediction"
        self.status_topic = f"{prefix}/{device_id}/status"
        self.discovery = discovery
        self.discovery_prefix = discovery_prefix
        self.username = username
        self._model = ""
        self._keepalive = keepalive
        self._tls_files = (ca_file, certfile, keyfile)
        self.protocol = protocol
        # The broker's Maximum Packet Size (MQTT 5 CONNACK), when it sets one.
        self._max_packet: int | None = None
        self._control_refused: set[str] = set()
        # With on_change: the label of the change that could not be sent, while it waits.
        self._unsent: str | None = None

        # Counters. `_pending` maps the mid of each unacknowledged QoS>0 message to its kind and
        # topic ("" for a prediction), and `_sent` the mid of each such prediction to (frame
        # index, payload), for `close` to send again on a new connection; `_early` holds mids
        # whose acknowledgement overtook our bookkeeping (see `_track`), with the broker's
        # reason if it refused the message. A QoS>0 prediction waits in `_backlog` (frame index,
        # payload) until `_pump` hands it to paho; `_queued` counts it from acceptance to
        # acknowledgement, `_in_paho` from the hand-over. `_pumping` lets one thread at a time
        # hand over, so the order holds, and `_handing` is the prediction on its way from the
        # backlog to `_sent` meanwhile. `_settled` is set once `close` has counted what is left:
        # later acknowledgements of the old connection then count for nothing.
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._pending: dict[int, tuple[str, str]] = {}
        self._sent: dict[int, tuple[int, str]] = {}
        self._early: collections.OrderedDict[int, str | None] = collections.OrderedDict()
        self._backlog: collections.deque[tuple[int, str]] = collections.deque()
        self._queued = 0
        self._in_paho = 0
        self._pumping = False
        self._handing: tuple[int, str] | None = None
        self._settled = False
        self._closing = False  # close() hands paho nothing more (see `_wait_in_flight`)
        # From a connection until paho has resent what it held (see `_on_connect`).
        self._resending = False
        # For the spool's checkpoints: `_changes` counts changes to what is unacknowledged, and
        # `_progress_at` is when the queue last moved (an acknowledgement, or its first entry).
        self._changes = 0
        self._checkpointed = 0
        self._progress_at = time.monotonic()
        self.spool_every = float(spool_every)
        self._stop_checkpoints = threading.Event()
        self.accepted = 0
        self.published = 0
        self.overflow = 0
        self.dropped = 0
        self.connects = 0
        self._overflow_at_loss = 0  # `overflow` when the connection was lost
        self.connect_failures = 0
        self._connected = threading.Event()
        self._closed = False
        #: Problems logged since the last connection: each is logged once until one succeeds.
        self._problems: set[str] = set()
        self._overflow_logged_at = -_REPEAT_LOG_EVERY
        self._refused_logged_at = -_REPEAT_LOG_EVERY
        self._disconnected_at: float | None = None
        self._connected_at = 0.0
        self._quick_drops = 0  # connections in a row lost within _QUICK_DROP_S
        # paho's last socket error (a TLS alert, say) and whether the broker answered the current
        # connection attempt: see `_on_disconnect`.
        self._socket_error = ""
        self._answered = False
        # Why the broker could not be reached, found once per outage (see `_on_connect_fail`).
        self._unreachable: str | None = None
        #: Predictions `close` kept in the spool instead of dropping them.
        self.spooled = 0
        self._spool = MqttSpool(spool) if spool else None
        if self._spool is not None:
            self._spool.claim()
        try:
            if self._spool is not None:
                self._queue_spooled(self._spool.load())
            self._password = self._read_password(username, password_file)
            client = self._new_client()
            client.max_queued_messages_set(_PAHO_QUEUE)
            client.reconnect_delay_set(reconnect_min, reconnect_max)  # type: ignore[arg-type]
            client.on_connect = self._on_connect
            client.on_connect_fail = self._on_connect_fail
            client.on_disconnect = self._on_disconnect
            client.on_publish = self._on_publish
            client.on_log = self._on_log
            self.client = client
            self._connect_async(client, keepalive)
            client.loop_start()
        except BaseException:
            if self._spool is not None:  # a sink that never started must not keep it claimed
                self._spool.release()
            raise
        log.info("MQTT: publishing to %s on %s (QoS %d, MQTT %s)", self.prediction_topic,
                 self.address, qos, protocol)
        self._pump()  # the spool's, if any: paho sends them once connected
        if self._spool is not None:
            threading.Thread(target=self._checkpoints, name="mqtt-spool", daemon=True).start()

    def _queue_spooled(self, kept: list[tuple[int, str]]) -> None:
        """Queue the predictions the last run kept, before any of this run's."""
        if not kept:
            return
        if len(kept) > self.queue_size:  # a smaller queue_size than the last run's
            self.overflow += len(kept) - self.queue_size
            log.warning("MQTT: the spool %s holds %d predictions, more than queue_size; queued "
                        "the newest %d", self._spool_path, len(kept), self.queue_size)
            kept = kept[-self.queue_size:]
        self._backlog.extend(kept)
        self._queued += len(kept)
        self.accepted += len(kept)
        log.info("MQTT: queued %s kept in %s by the last run", many(len(kept), "prediction"),
                 self._spool_path)

    @property
    def spool(self) -> MqttSpool | None:
        """The spool, if there is one (its `writes` count what it wrote to the disk)."""
        return self._spool

    @property
    def _spool_path(self) -> str:
        return str(self._spool.path) if self._spool is not None else ""

    # -- setup ------------------------------------------------------------------------------

    @staticmethod
    def _read_password(username: str | None, password_file: str | None) -> str | None:
        if password_file and not username:
            raise ConfigError("mqtt: password_file is set but username is not; set username too")
        if not username:
            return None
        if password_file:
            return read_secret(password_file, "the MQTT password_file")
        if (cred := credential_path(MQTT_PASSWORD_CREDENTIAL)) is not None:
            return read_secret(cred, f"the systemd credential {MQTT_PASSWORD_CREDENTIAL}")
        return None

    def _new_client(self) -> mqtt.Client:
        """A paho client with this sink's identity, last will, login and TLS, not connected.

        Raises:
            ConfigError: the TLS files are missing or not PEM.
        """
        # MQTT 5, because only its acknowledgements say when the broker refused a message (an
        # ACL that denies the topic): under 3.1.1 the broker acknowledges and drops it.
        if self.protocol == "5":
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"edge-sdk-{self.device_id}",
                                 protocol=mqtt.MQTTv5)
        else:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"edge-sdk-{self.device_id}",
                                 clean_session=True, protocol=mqtt.MQTTv311)
        client.will_set(self.status_topic, OFFLINE, qos=1, retain=True)
        if self.username:
            client.username_pw_set(self.username, self._password)
        if self.tls:
            self._set_tls(client, *self._tls_files)
        return client

    def _connect_async(self, client: mqtt.Client, keepalive: int) -> None:
        # A clean start every time, as 3.1.1's clean session: the sink keeps its own queue.
        if self.protocol == "5":
            client.connect_async(self.host, self.port, keepalive, clean_start=True)
        else:
            client.connect_async(self.host, self.port, keepalive)

    @staticmethod
    def _set_tls(
        client: mqtt.Client, ca_file: str | None, certfile: str | None, keyfile: str | None
    ) -> None:
        for name, path in (("ca_file", ca_file), ("certfile", certfile), ("keyfile", keyfile)):
            if path and not Path(path).is_file():
                what = "is not a file" if Path(path).exists() else "does not exist"
                raise ConfigError(f"mqtt: {name} {path!r} {what}; give the PEM file's path")
        try:
            client.tls_set(ca_certs=ca_file, certfile=certfile, keyfile=keyfile)
        except (ssl.SSLError, OSError, ValueError) as exc:
            # OpenSSL's "PEM lib" says nothing of the usual cause: a certfile without its key.
            keyless = "; set keyfile unless certfile holds the key too" if certfile and not keyfile else ""
            raise ConfigError(
                f"mqtt: cannot load the TLS files ({exc}); check ca_file, certfile and keyfile are "
                f"PEM{keyless}"
            ) from None

    # -- Sink -------------------------------------------------------------------------------

    def attach(self, pipeline: Any) -> None:
        """Register this sink's gauges with the pipeline's metrics, when it has them."""
        metrics = getattr(pipeline, "metrics", None)
        register = getattr(metrics, "register_gauge", None)
        if register is None:
            return
        register("mqtt_queue_depth", lambda: float(self.queue_depth))
        register("mqtt_overflow_total", lambda: float(self.overflow))
        register("mqtt_dropped_total", lambda: float(self.dropped))
        register("mqtt_published_total", lambda: float(self.published))
        register("mqtt_connected", lambda: 1.0 if self.connected else 0.0)

    def publish(self, prediction: Prediction, frame: Frame | None = None) -> None:
        """Queue `prediction` for the broker if the publish policy selects it; never blocks.

        A prediction that finds the queue full is counted in `overflow` (and logged). `dropped`
        counts a QoS 0 prediction made while disconnected, and one MQTT cannot carry (a payload
        over its 256 MiB limit) or paho refuses, which is also logged.

        Raises:
            SinkError: the sink is closed (a pipeline closes its sinks when it stops).
        """
        self._refuse_if_closed(f"MQTT: the sink for {self.address}")
        label = prediction.label.name if prediction.label else None
        if not self.policy.decide(label, time.monotonic()):
            return
        if prediction.model and prediction.model != self._model:
            # The discovery config names the model; announce it again now that it is known.
            self._model = prediction.model
            if self.discovery and self.connected:
                self._announce()
        blocked = self._queued >= self.queue_size or (self.qos == 0 and not self.connected)
        if blocked and self._unsent is not None and self._unsent == label:
            # The change that could not go out a frame ago, offered again: counted once, in
            # `overflow` or `dropped`, not once per frame of the outage.
            self.policy.not_sent()
            return
        if self._queued >= self.queue_size:
            self._count_overflow()
            self._not_sent(label)
            return
        payload = json.dumps(prediction.to_dict(), separators=(",", ":"))
        too_big = self._too_big(self.prediction_topic, len(payload))
        if too_big:  # json.dumps escapes to ASCII: characters are bytes
            self._count_refused(prediction.frame_index, too_big)
            self._not_sent(label)
            return
        self._unsent = None
        if self.qos == 0:
            if not self._publish_qos0(prediction.frame_index, payload):
                self._not_sent(label)
            return
        with self._lock:
            if not self._queued:
                self._progress_at = time.monotonic()
            self._backlog.append((prediction.frame_index, payload))
            self._queued += 1
            self.accepted += 1
            self._changes += 1
        self._pump()

    def _not_sent(self, label: str | None) -> None:
        """A prediction the policy chose could not go out: with on_change, the consumer still
        shows the label before it, so the policy offers it again with the next frame."""
        self.policy.not_sent()
        if self.policy.on_change:
            self._unsent = label

    def _too_big(self, topic: str, size: int) -> str:
        """Why a message of `size` bytes cannot go to `topic` ("" if it can).

        Sent anyway, a message over the broker's Maximum Packet Size makes it drop the
        connection, and the resend after the reconnect does the same, for ever.
        """
        if size > _MAX_PAYLOAD:
            return f"{size} bytes is over MQTT's limit"
        # Fixed header, topic, packet id and an empty property length: within 16 bytes.
        packet = size + len(topic.encode()) + 16
        if self._max_packet is not None and packet > self._max_packet:
            return (f"{packet} bytes is over the broker's maximum packet size of {self._max_packet}; "
                    "raise max_packet_size in the broker's config")
        return ""

    def _publish_qos0(self, frame_index: int, payload: str) -> bool:
        """Hand a QoS 0 prediction to paho; False if it was dropped (and counted) instead."""
        # Nothing waits for an acknowledgement, so paho's queue needs no window.
        try:
            info = self.client.publish(self.prediction_topic, payload, qos=0)
        except ValueError as exc:  # topic, QoS and size were checked: should not happen
            self._count_refused(frame_index, str(exc))
            return False
        if info.rc == mqtt.MQTT_ERR_NO_CONN:
            self.dropped += 1  # QoS 0 is not kept for the reconnect; the disconnect was logged
            return False
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._count_refused(frame_index, mqtt.error_string(info.rc))
            return False
        self.accepted += 1
        self.published += 1  # handed to the socket: all QoS 0 ever confirms
        return True

    def flush(self, timeout: float) -> bool:
        """Wait until every accepted prediction is acknowledged; return whether that happened."""
        deadline = time.monotonic() + timeout
        with self._drained:
            while self._pending or self._queued:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._drained.wait(left)
        return True

    def close(self) -> None:
        """Deliver what is queued (for up to `close_timeout`), publish `offline`, disconnect.

        Connected, the queue is flushed on the connection and `offline` follows it: the clean
        disconnect tells the broker to drop the last will, so `offline` is published explicitly.
        Disconnected (the broker away, or back while paho sleeps in a reconnect backoff of up to
        `reconnect_max`), one last attempt is made on a new connection with the time left, even
        with nothing queued: a broker that is there by now gets the queue and `offline`. Whatever
        is still not acknowledged at the end is kept in the `spool` if there is one, else counted
        in `dropped`, and logged. Neither case waits on paho's
        own thread past `close_timeout` (it is a daemon and ends by itself once it sees the
        disconnect). Safe to call twice.
        """
        if self._closed:
            return
        self._closed = True
        self._stop_checkpoints.set()
        deadline = time.monotonic() + self.close_timeout
        old = self.client
        # What the broker did not acknowledge, when closed while disconnected (None: connected).
        left: list[tuple[int, str]] | None = None
        stopping: list[threading.Thread] = []
        if self.connected:
            self.flush(self.close_timeout * 0.5)
        if self.connected:
            # The next 0.3 for what paho has in flight, the last 0.2 for `offline`.
            self._wait_in_flight(deadline - self.close_timeout * 0.2)
            info = old.publish(self.status_topic, OFFLINE, qos=1, retain=True)
            # Not delivered in time: the broker still publishes the last will (offline).
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(max(0.05, deadline - time.monotonic()))
            old.disconnect()
            stopping.append(_stop_loop(old))
        else:
            # Settled first: the old client must not announce "online" if it connects now, nor
            # may its late acknowledgements count what the new connection sends again.
            with self._lock:
                self._settled = True
                messages = self._unacknowledged()
            old.disconnect()
            _stop_loop(old)  # not waited for: it may sleep out a backoff second or a connect
            # Also with nothing queued: a broker that restarted while we were away may hold
            # our retained "online" with no connection of ours left for a last will to follow.
            left = messages
            if deadline - time.monotonic() >= _MIN_LAST_ATTEMPT_S:
                left, thread = self._last_attempt(messages, deadline)
                if thread is not None:
                    stopping.append(thread)
        with self._lock:
            self._settled = True
            delivered = 0 if left is None else len(messages) - len(left)
            if left is None:  # closed while connected: what the broker has not acknowledged
                left = self._unacknowledged()
            lost = max(0, self._queued - delivered)
            self.published += self._queued - lost
            self._queued = self._in_paho = 0
            self._backlog.clear()
            self._sent.clear()
            self._drained.notify_all()
        kept = self._keep(left[:lost])
        if self._spool is not None:
            self._spool.release()
        self.spooled += kept
        lost -= kept
        self.dropped += lost
        for thread in stopping:  # paho's thread ends at once after a disconnect on a connection
            thread.join(max(0.1, deadline - time.monotonic()))
        kept_note = f", {kept} kept in {self._spool_path} for the next start" if kept else ""
        if lost and not self.connects:
            log.warning(
                "MQTT: closed; %d predictions published, %d overflowed, %d dropped, of which %d "
                "were never sent: the broker %s was not reached in this run%s",
                self.published, self.overflow, self.dropped, lost, self.address, kept_note,
            )
        elif lost:
            log.warning(
                "MQTT: closed; %d predictions published, %d overflowed, %d dropped, of which %d "
                "were not acknowledged by %s before close_timeout (%.1f s)%s",
                self.published, self.overflow, self.dropped, lost, self.address,
                self.close_timeout, kept_note,
            )
        else:
            log.log(
                logging.WARNING if kept else logging.INFO,
                "MQTT: closed; %d predictions published, %d overflowed, %d dropped%s",
                self.published, self.overflow, self.dropped, kept_note,
            )

    def _wait_in_flight(self, until: float) -> None:
        """Hand paho nothing more, and wait (until `until`) for what it holds unacknowledged.

        An acknowledgement that came after `close` settled its counts would be ignored, and
        its prediction kept in the spool too: it would arrive twice.
        """
        with self._drained:
            self._closing = True
            while self._in_paho > 0 and (left := until - time.monotonic()) > 0:
                self._drained.wait(min(left, 0.02))  # notified only once all is acknowledged

    def _unacknowledged(self) -> list[tuple[int, str]]:
        """The predictions the broker has not acknowledged, oldest first; with the lock held.

        The one on its way from the backlog to paho is among them: left out, a checkpoint then
        would take it off the disk, or a stop count it dropped, before the broker has it.
        """
        on_the_way = [] if self._handing is None else [self._handing]
        return [*self._sent.values(), *on_the_way, *self._backlog]

    def _checkpoints(self) -> None:
        """The spool's thread: every `spool_every`, write what a power cut would lose."""
        while not self._stop_checkpoints.wait(self.spool_every):
            self._checkpoint()

    def _checkpoint(self) -> None:
        assert self._spool is not None
        with self._lock:
            if self._settled or self._closing or self._changes == self._checkpointed:
                return
            stalled = self._queued > 0 and (
                not self._connected.is_set()
                or time.monotonic() - self._progress_at >= self.spool_every)
            if not (stalled or self._spool.holds):
                return  # healthy, with nothing on the disk: no copy of the queue to make
            changes = self._changes
            messages = self._unacknowledged()
        # Written outside the lock: publish() must not wait for a disk.
        if self._spool.checkpoint(messages, stalled=stalled):
            with self._lock:
                self._checkpointed = changes

    def _keep(self, messages: list[tuple[int, str]]) -> int:
        """Write `messages` to the spool (removing it when there are none); how many it kept."""
        if self._spool is None:
            return 0
        try:
            self._spool.save(messages)
        except OSError as exc:
            if messages:
                log.error("MQTT: cannot keep %s in the spool %s (%s); they are dropped",
                          many(len(messages), "prediction"), self._spool_path, exc)
            else:  # all delivered, but the old spool is still there: the next start resends it
                log.error("MQTT: cannot remove the spool %s (%s), whose predictions were all "
                          "delivered; the next start would send them again: remove it",
                          self._spool_path, exc)
            return 0
        return len(messages)

    def _last_attempt(
        self, messages: list[tuple[int, str]], deadline: float
    ) -> tuple[list[tuple[int, str]], threading.Thread | None]:
        """Connect on a new client and send `messages`, then `offline`, before `deadline`.

        A new client, because the old one's thread may be asleep in its backoff or inside a
        connect, and the client cannot be used from here meanwhile; the same client id, so the
        broker replaces a connection of ours it may still think alive.

        Returns:
            Those of `messages` the broker did not acknowledge, and the thread stopping the
            client.
        """
        log.info("MQTT: closing while disconnected from %s; one last attempt to deliver %d "
                 "predictions and publish offline", self.address, len(messages))
        try:
            client = self._new_client()
        except ConfigError as exc:  # a TLS file removed since the start
            log.warning("%s", exc)
            return messages, None
        accepted = threading.Event()

        def on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if not reason.is_failure:
                accepted.set()

        client.on_connect = on_connect
        # Connected, paho keeps to this window (unlike its resend after a reconnect, see _WINDOW).
        client.max_inflight_messages_set(_WINDOW)
        # A refusal (a broker still starting) is retried at once; the deadline bounds it all.
        client.reconnect_delay_set(0.1, 0.4)  # type: ignore[arg-type]
        client.connect_timeout = max(_MIN_LAST_ATTEMPT_S, deadline - time.monotonic())
        self._connect_async(client, self._keepalive)
        client.loop_start()
        left = messages
        try:
            if accepted.wait(max(0.0, deadline - time.monotonic())):
                infos = [client.publish(self.prediction_topic, payload, qos=self.qos)
                         for _, payload in messages]
                for info in infos:
                    with contextlib.suppress(RuntimeError, ValueError):
                        info.wait_for_publish(max(0.0, deadline - time.monotonic()))
                left = [m for m, info in zip(messages, infos, strict=True) if not _published(info)]
                status = client.publish(self.status_topic, OFFLINE, qos=1, retain=True)
                with contextlib.suppress(RuntimeError, ValueError):
                    status.wait_for_publish(max(0.05, deadline - time.monotonic()))
        finally:
            client.disconnect()
            stopping = _stop_loop(client)
        # Never connected, its thread may be sleeping out a retry delay: not worth waiting for.
        return left, stopping if accepted.is_set() else None

    # -- state ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def queue_depth(self) -> int:
        """Accepted predictions not yet acknowledged by the broker."""
        return self._queued

    def stats(self) -> dict[str, int | bool]:
        """Counters for logs, `doctor` and tests."""
        return {
            "connected": self.connected,
            "accepted": self.accepted,
            "published": self.published,
            "queue_depth": self.queue_depth,
            "overflow": self.overflow,
            "dropped": self.dropped,
            "spooled": self.spooled,
            "connects": self.connects,
            "connect_failures": self.connect_failures,
        }

    def wait_connected(self, timeout: float) -> bool:
        """Wait for the broker to accept the connection; return whether it did."""
        return self._connected.wait(timeout)

    # -- bookkeeping --------------------------------------------------------------------------

    def _pump(self) -> None:
        """Hand backlog predictions to paho, oldest first, while the window has room.

        Called after each new prediction, each connection and each acknowledgement (on paho's
        thread, where paho allows publishing). Whichever thread finds another one handing over
        leaves the work to it: the one handing over looks at the backlog again after each
        prediction.
        """
        while True:
            with self._lock:
                if (self._pumping or self._settled or self._closing or not self._backlog
                        or self._in_paho >= _WINDOW or self._resending
                        or not self._connected.is_set()):
                    return
                self._pumping = True
                message = self._handing = self._backlog.popleft()
                self._in_paho += 1
            try:
                more = self._hand_over(message)
            finally:
                with self._lock:
                    self._pumping = False
                    self._handing = None
            if not more:
                return

    def _hand_over(self, message: tuple[int, str]) -> bool:
        """Publish one backlog prediction through paho; return False to stop handing over.

        The same tuple goes on to `_sent`: the spool finds its last line by identity.
        """
        frame_index, payload = message
        try:
            info = self.client.publish(self.prediction_topic, payload, qos=self.qos)
        except ValueError as exc:  # topic, QoS and size were checked: should not happen
            self._count_refused(frame_index, str(exc), accepted=True)
            return True
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            # Control messages fill paho's queue (many reconnects, no acknowledgement yet):
            # keep the prediction first in line; the next acknowledgement pumps again.
            with self._lock:
                self._backlog.appendleft(message)
                self._handing = None
                self._in_paho -= 1
            return False
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            # paho 2.x returns no other code under loop_start(). Should a later one, whether it
            # kept the message is unknown: tracking it could hold flush() up for an acknowledgement
            # that never comes, so it counts as dropped, loudly (a late acknowledgement of it
            # would then be ignored).
            self._count_refused(frame_index, mqtt.error_string(info.rc), accepted=True)
            return True
        self._track(info.mid, _PREDICTION, message)
        return True

    def _track(self, mid: int, kind: str, prediction: tuple[int, str] | None = None,
               topic: str = "") -> None:
        # paho may deliver the acknowledgement on its thread before client.publish() has returned
        # to us; such a mid is waiting in `_early`. Holding our lock around client.publish()
        # instead would deadlock: paho calls on_publish while holding its own lock.
        refused = None
        with self._lock:
            if prediction is not None and prediction is self._handing:
                self._handing = None  # in `_sent` now, or acknowledged already
            if mid in self._early:
                refused = self._early.pop(mid)
                self._acknowledged(kind, refused)
            else:
                self._pending[mid] = (kind, topic)
                if prediction is not None:
                    self._sent[mid] = prediction
        if refused:
            self._report_refusal(kind, topic or self.prediction_topic, refused)

    def _acknowledged(self, kind: str, refused: str | None = None) -> None:
        """Count an acknowledgement; `refused` is the broker's reason when it refused the
        message (MQTT 5 only), which makes a prediction dropped, not published."""
        # Called with the lock held.
        if self._settled:
            return
        if kind == _PREDICTION:
            if refused:
                self.dropped += 1
            else:
                self.published += 1
            self._in_paho -= 1
            self._queued -= 1
            self._changes += 1
            self._progress_at = time.monotonic()
        if not self._pending and not self._queued:
            self._drained.notify_all()

    def _report_refusal(self, kind: str, topic: str, reason: str) -> None:
        if kind == _PREDICTION:
            now = time.monotonic()
            if now - self._refused_logged_at >= _REPEAT_LOG_EVERY:
                log.error("MQTT: broker %s refused a prediction on %s (%s); %s; %s dropped so "
                          "far", self.address, topic, reason,
                          _refusal_fix(reason, topic, self.username),
                          many(self.dropped, "prediction"))
                self._refused_logged_at = now
        else:
            self._refused_control(topic, f"{reason}; {_refusal_fix(reason, topic, self.username)}")

    def _refused_control(self, topic: str, why: str) -> None:
        # Once per topic and run: the status and discovery configs go out on every connect.
        if topic not in self._control_refused:
            self._control_refused.add(topic)
            log.warning("MQTT: %s not sent: %s", topic, why)

    def _count_overflow(self) -> None:
        self.overflow += 1
        now = time.monotonic()
        if now - self._overflow_logged_at >= _REPEAT_LOG_EVERY:
            log.warning(
                "MQTT: queue full (%s waiting for %s); %s overflowed so far; raise [mqtt] "
                "queue_size or check the broker",
                many(self.queue_size, "prediction"), self.address,
                many(self.overflow, "prediction"),
            )
            self._overflow_logged_at = now

    def _count_refused(self, frame_index: int, why: str, *, accepted: bool = False) -> None:
        if accepted:  # the one on its way from the backlog, holding a place in the window
            with self._lock:
                self._handing = None
                self._in_paho -= 1
                self._queued -= 1
                self._changes += 1
                if not self._pending and not self._queued:
                    self._drained.notify_all()
        self.dropped += 1
        now = time.monotonic()
        if now - self._refused_logged_at >= _REPEAT_LOG_EVERY:
            log.error(
                "MQTT: cannot send prediction %d (%s); dropped it, %s dropped so far",
                frame_index, why, many(self.dropped, "prediction"),
            )
            self._refused_logged_at = now

    def _problem(self, message: str, level: int) -> None:
        # One line per kind of trouble until a connection succeeds; repeats (every retry) only at
        # DEBUG, also when retries alternate between two (a TLS refusal read in time, or not).
        if message not in self._problems:
            log.log(level, "%s", message)
            self._problems.add(message)
        else:
            log.debug("%s", message)

    # -- paho callbacks (network thread) ------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if self._settled:  # close() has given this client up: it must not announce "online"
            return
        self._answered = True
        self._socket_error = ""
        self._unreachable = None
        if reason.is_failure:
            self.connect_failures += 1
            name = str(reason)
            hint = (
                "; check username and password_file" if any(a in name for a in _AUTH_REASONS) else ""
            )
            self._problem(
                f"MQTT: broker {self.address} refused the connection: {name}{hint}; "
                "retrying",
                logging.ERROR,
            )
            return
        self.connects += 1
        self._connected_at = time.monotonic()
        self._problems.clear()
        self._max_packet = getattr(properties, "MaximumPacketSize", None)
        outage = ""
        if self._disconnected_at is not None:
            outage = f" after {time.monotonic() - self._disconnected_at:.1f} s away"
            self._disconnected_at = None
            overflowed = self.overflow - self._overflow_at_loss
            if overflowed:
                outage += (f" ({many(overflowed, 'prediction')} overflowed meanwhile; raise "
                           "[mqtt] queue_size to ride out such an outage)")
        log.info(
            "MQTT: connected to %s%s; %s queued",
            self.address, outage, many(self.queue_depth, "prediction"),
        )
        # Retained messages first, so they precede the backlog paho resends after this callback;
        # `connected` turns true once they are queued, so flush() after it covers them.
        self._send_control(self.status_topic, ONLINE.encode())
        if self.discovery:
            self._announce()
        with self._lock:
            # paho resends what it holds after this callback returns, and sends a new message
            # at once on an open socket: one handed over before the resend (or before the
            # CONNACK, on an earlier socket) would overtake older ones. The first
            # acknowledgement on this connection (of "online" at the latest) comes after the
            # resend, and ends the wait.
            self._resending = self._in_paho > 0
        self._connected.set()
        self._pump()

    def _announce(self) -> None:
        for msg in discovery_messages(
            device_id=self.device_id,
            prediction_topic=self.prediction_topic,
            status_topic=self.status_topic,
            model=self._model,
            qos=self.qos,
            discovery_prefix=self.discovery_prefix,
            prefix=self.prefix,
        ):
            self._send_control(msg.topic, msg.encode())

    def _send_control(self, topic: str, payload: bytes) -> None:
        too_big = self._too_big(topic, len(payload))
        if too_big:
            self._refused_control(topic, too_big)
            return
        info = self.client.publish(topic, payload, qos=1, retain=True)
        if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self._track(info.mid, _CONTROL, topic=topic)
        else:  # the next (re)connect sends it again
            log.warning("MQTT: paho refused %s (%s)", topic, mqtt.error_string(info.rc))

    def _outage_began(self) -> None:
        """Note when the broker was lost, and the overflow then, once per outage (the first of
        its failed attempts; before the first connection, both count from the start)."""
        if self._disconnected_at is None:
            self._disconnected_at = time.monotonic()
            if self.connects:
                self._overflow_at_loss = self.overflow

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self.connect_failures += 1
        self._outage_began()
        if self._unreachable is None:  # once per outage: the probe takes up to a few seconds
            self._unreachable = why_unreachable(self.host, self.port, tls=self.tls)
        why = f": {self._unreachable}" if self._unreachable else ""
        self._problem(
            f"MQTT: cannot reach broker {self.address}{why}; retrying with backoff",
            logging.WARNING,
        )

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        answered, self._answered = self._answered, False
        if self._closed:
            return
        if not was_connected:
            if not answered:  # a refusal by CONNACK was counted and logged in _on_connect
                self._closed_before_connack()
            return
        connected_for = time.monotonic() - self._connected_at
        self._outage_began()
        # Dropped again and again right after connecting: Mosquitto does that, without a
        # reason, to each of two clients that share a client id, every time the other connects.
        self._quick_drops = self._quick_drops + 1 if connected_for < _QUICK_DROP_S else 0
        hint = ""
        why = str(reason).lower()
        if "large" in why:  # MQTT 5 "Packet too large": it would recur
            hint = "; a message was over the broker's size limit (message_size_limit)"
        elif "taken over" in why or self._quick_drops >= _QUICK_DROPS:
            hint = (f"; another client may be using this client id (edge-sdk-{self.device_id}): "
                    "give each board its own [mqtt] device_id")
        # paho's name for a connection that ended without a DISCONNECT from the broker.
        said = "closed by the broker, or the network dropped" if why == "unspecified error" else reason
        log.warning(
            "MQTT: connection to %s lost (%s%s); %s queued, reconnecting",
            self.address, said, hint, many(self.queue_depth, "prediction"),
        )

    def _closed_before_connack(self) -> None:
        # The broker closed the connection before answering CONNECT. Over TLS 1.3 this is how it
        # refuses a client certificate (a missing one, or one its CA did not sign): the handshake
        # completes on our side first, and the broker's TLS alert only shows on the next read.
        self.connect_failures += 1
        self._outage_began()
        why, self._socket_error = self._socket_error or "no reason given", ""
        if "Connection State" in why:  # paho's own state dump: the server never answered
            why = "no answer to CONNECT"
        if self.tls and "alert" in why.lower():
            self._problem(
                f"MQTT: broker {self.address} refused the TLS connection ({why}); "
                "check certfile and keyfile (the client certificate it wants); retrying",
                logging.ERROR,
            )
        else:
            # Also what a server that never answers looks like once paho gives up waiting: it
            # may not be an MQTT broker at all.
            self._problem(
                f"MQTT: {self.address} did not accept the connection ({why}); check it is "
                "an MQTT broker and [mqtt] port and tls (a TLS port needs tls = true); retrying",
                logging.WARNING,
            )

    def _on_log(self, client: mqtt.Client, userdata: Any, level: int, message: str) -> None:
        # paho says why a socket failed only here; the reason goes into the next problem line.
        if level == mqtt.MQTT_LOG_ERR:
            self._socket_error = message

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        refused = str(reason) if getattr(reason, "is_failure", False) else None
        with self._lock:
            self._resending = False  # see `_on_connect`
            tracked = self._pending.pop(mid, None)
            self._sent.pop(mid, None)
            if tracked is not None:
                self._acknowledged(tracked[0], refused)
            else:
                # Either an acknowledgement that overtook `_track`, claimed right after, or a
                # QoS 0 prediction (never tracked); the bound keeps the latter from piling up.
                self._early[mid] = refused
                if len(self._early) > _EARLY_LIMIT:
                    self._early.popitem(last=False)
        if refused and tracked is not None:
            self._report_refusal(tracked[0], tracked[1] or self.prediction_topic, refused)
        self._pump()
