"""A real Mosquitto broker for tests, on a free loopback port, plus a subscriber that records.

The broker runs from Debian's `mosquitto` package (/usr/sbin/mosquitto) with its own config in a
temporary folder: one listener on 127.0.0.1, persistence off (so a restart forgets retained
messages and sessions, the harshest case for a client), optional password file and TLS (which
may require client certificates).
`stop()` / `start()` keep the port, so clients reconnect to the same address.
"""

from __future__ import annotations

import collections
import getpass
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
LOG_LINES = 5000


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class BrokerTLS:
    """Files of a self-signed CA and a server certificate it signed."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    ca_key: Path  # to sign client certificates with (`make_client_cert`)


@dataclass(frozen=True)
class ClientCert:
    """A client certificate and its private key (PEM)."""

    cert_file: Path
    key_file: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _sign(tls: BrokerTLS, folder: Path, name: str, subject: str, extensions: str) -> tuple[Path, Path]:
    key, csr, crt = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.crt"
    ext = folder / f"{name}.ext"
    ext.write_text(extensions)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", str(key),
             "-out", str(csr))
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(tls.ca_file), "-CAkey", str(tls.ca_key),
             "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(crt))
    return crt, key


def make_tls(folder: Path, host: str = "127.0.0.1") -> BrokerTLS:
    """Make a CA and a server certificate for `host` with the openssl command."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = folder / "ca.key", folder / "ca.crt"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=edge-sdk test CA", "-keyout", str(ca_key), "-out", str(ca_crt))
    ca = BrokerTLS(ca_crt, folder / "server.crt", folder / "server.key", ca_key)
    _sign(ca, folder, "server", f"/CN={host}", f"subjectAltName=IP:{host}\nbasicConstraints=CA:FALSE\n")
    return ca


def make_client_cert(tls: BrokerTLS, name: str = "client") -> ClientCert:
    """Make a client certificate signed by `tls`'s CA, next to its files."""
    crt, key = _sign(tls, tls.ca_file.parent, name, f"/CN=edge-sdk test {name}",
                     "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    return ClientCert(crt, key)


class Mosquitto:
    """One mosquitto process with a config written for the test.

    Args:
        folder: Where the config, password file and log go.
        users: username -> password; when given, anonymous clients are refused.
        tls: Serve TLS with these files instead of plain TCP.
        require_certificate: With `tls`, refuse clients without a certificate signed by its CA.
        persistence: Keep sessions (and the messages queued for them) across a restart, so a
            subscriber with a persistent session misses nothing while the broker is down.
        verbose: Log every packet (kept in `log`, the last LOG_LINES lines); off for soaks.
        extra: More lines for the config (an acl_file, a max_packet_size, ...).
    """

    def __init__(
        self,
        folder: Path,
        *,
        users: dict[str, str] | None = None,
        tls: BrokerTLS | None = None,
        require_certificate: bool = False,
        persistence: bool = False,
        verbose: bool = True,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.folder = folder
        self.port = free_port()
        self.host = "127.0.0.1"
        self.tls = tls
        self.proc: subprocess.Popen[str] | None = None
        self.log: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {folder}/",
            "max_queued_messages 100000",
            "log_dest stderr",  # unbuffered, unlike stdout on a pipe
            "log_type all" if verbose else "log_type error\nlog_type warning\nlog_type information",
            # Root would drop to the 'mosquitto' user, which cannot read files in pytest's tmp.
            f"user {getpass.getuser()}",
        ]
        if users:
            pw = folder / "passwd"
            pw.write_text("")
            for name, password in users.items():
                subprocess.run([MOSQUITTO_PASSWD, "-b", str(pw), name, password], check=True,
                               capture_output=True, timeout=30)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        if tls:
            lines += [f"cafile {tls.ca_file}", f"certfile {tls.cert_file}", f"keyfile {tls.key_file}"]
            if require_certificate:
                lines.append("require_certificate true")
        lines += extra
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and return once it accepts connections."""
        assert self.proc is None, "already running"
        ready = threading.Event()
        proc = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        self.proc = proc

        def pump() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                self.log.append(line.rstrip())
                if " running" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True, name="mosquitto-log").start()
        if not ready.wait(timeout) or proc.poll() is not None:
            self.stop()
            raise RuntimeError("mosquitto did not start:\n" + "\n".join(list(self.log)[-20:]))

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL) and wait for it to exit."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def clients_connected(self) -> int:
        """Count 'New client connected' lines in the log so far."""
        return sum("New client connected" in line for line in self.log)


class Recorder:
    """A paho subscriber that records every message it gets, in order.

    Args:
        broker: The broker to subscribe to.
        topics: Topic filters, subscribed at `qos`.
        session: Client id of a persistent session (the broker queues QoS 1 and 2 messages for
            it while it is away); None for a clean session.
        qos: Subscription QoS; 2 makes the broker deliver each message to it exactly once.
        ca_file: CA file when the broker serves TLS.
        client_cert: The certificate to show a broker that requires one.
        auth: (username, password) when the broker wants them.
    """

    def __init__(
        self,
        broker: Mosquitto,
        topics: list[str],
        *,
        ca_file: Path | None = None,
        client_cert: ClientCert | None = None,
        auth: tuple[str, str] | None = None,
        session: str | None = None,
        qos: int = 1,
    ) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=session or f"rec-{id(self)}-{time.monotonic_ns()}",
            clean_session=session is None,
        )
        if ca_file:
            cert = client_cert
            self.client.tls_set(ca_certs=str(ca_file), certfile=str(cert.cert_file) if cert else None,
                                keyfile=str(cert.key_file) if cert else None)
        if auth:
            self.client.username_pw_set(*auth)
        # paho annotates the delays as int, but any number of seconds works (as in MqttSink).
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]

        def on_connect(c: mqtt.Client, u: Any, flags: Any, rc: Any, props: Any = None) -> None:
            if not rc.is_failure:
                c.subscribe([(t, qos) for t in topics])

        def on_subscribe(c: mqtt.Client, u: Any, mid: Any, rcs: Any, props: Any = None) -> None:
            self._subscribed.set()

        def on_message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
            with self._cond:
                # paho types the payload bytes | bytearray; a received one is bytes.
                self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
                self._cond.notify_all()

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("recorder could not subscribe")

    def wait_for(self, predicate: Callable[[list[tuple[str, bytes, bool]]], bool],
                 timeout: float = 10.0) -> bool:
        """Wait until `predicate(messages)` holds; return whether it did within `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def payloads(self, topic: str) -> list[bytes]:
        with self._cond:
            return [p for t, p, _ in self.messages if t == topic]

    def json(self, topic: str) -> list[Any]:
        return [json.loads(p) for p in self.payloads(topic)]

    def last(self, topic: str) -> bytes | None:
        found = self.payloads(topic)
        return found[-1] if found else None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(broker: Mosquitto, topic: str, **recorder: Any) -> bytes | None:
    """Subscribe afresh and return the retained message on `topic` (None if there is none).

    The broker sends retained messages right after the SUBACK, so once a marker published after
    subscribing comes back, every retained message has arrived.
    """
    marker = f"test/marker/{id(broker)}-{time.monotonic_ns()}"
    rec = Recorder(broker, [topic, marker], **recorder)
    try:
        rec.client.publish(marker, b"x", qos=1)
        if not rec.wait_for(lambda m: any(t == marker for t, _, _ in m)):
            raise RuntimeError("marker did not come back")
        found = [p for t, p, r in rec.messages if t == topic and r]
        return found[-1] if found else None
    finally:
        rec.close()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A running anonymous broker on a free loopback port, stopped after the test."""
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
