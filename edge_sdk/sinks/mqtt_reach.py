"""Why an MQTT broker cannot be reached, in one line with its fix.

paho reports a failed connect with no reason at all (its `on_connect_fail` takes none), so the
sink and `edge-classify doctor` find the reason themselves, step by step: the host name, a TCP
connection, and for TLS the handshake. The probe opens a plain connection and closes it without
speaking MQTT; it is run once per outage, not on every retry.
"""

from __future__ import annotations

import socket
import ssl

#: Seconds each probe step waits (name lookup aside, which the system's resolver times).
PROBE_TIMEOUT_S = 2.0


def why_unreachable(host: str, port: int, *, tls: bool, timeout: float = PROBE_TIMEOUT_S) -> str:
    """Return "<what is wrong>; <what to check>" for a broker paho could not connect to.

    Empty when the probe gets through (the broker came back meanwhile, or a trouble the probe
    cannot see). For TLS, a handshake that works without checking the certificate means paho's
    failed on the certificate.
    """
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        return f"cannot resolve the host name {host!r} ({reason}); check [mqtt] host and the DNS"
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return (f"{exc.strerror or exc}; is the broker running and listening on port {port}? "
                "check [mqtt] host, port and the firewall")
    with sock:
        if not tls:
            return ""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with context.wrap_socket(sock, server_hostname=host):
                pass
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
            return (f"port {port} accepts connections but not TLS ({reason}); it may be a plain "
                    "MQTT port: use the broker's TLS port (usually 8883) or set tls = false")
    return ("the broker's TLS certificate is not trusted or is not for this host name; set "
            "[mqtt] ca_file to the CA certificate that signed it, and connect by the name it was "
            "issued for")
