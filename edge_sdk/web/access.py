"""Who may reach the web view: the bind address, the access token, and the check of each request.

The rule: loopback needs nothing (only this machine can connect); any other address needs a
token, unless the user says ``insecure=True`` on purpose (e.g. behind a reverse proxy that does
its own authentication).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
from dataclasses import dataclass

from edge_sdk.errors import ConfigError
from edge_sdk.secrets import read_secret

log = logging.getLogger(__name__)

DEFAULT_BIND = "127.0.0.1:8080"

#: Host names that always mean this machine; other names are refused (bind an IP address).
_LOCAL_NAMES = {"localhost": "127.0.0.1", "ip6-localhost": "::1"}
#: ASCII only: str.isalnum would let through letters a URL and a header encode differently.
_TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9._~+/=-]+")


def _is_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Loopback, also as an IPv4-mapped IPv6 address (::ffff:127.0.0.1)."""
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def _is_port(text: str) -> bool:
    # ASCII digits only: str.isdigit also accepts '²' (int() refuses it) and fullwidth digits.
    return text.isascii() and text.isdigit() and int(text) <= 65535


@dataclass(frozen=True)
class BindAddress:
    """Where the server listens.

    Attributes:
        host: An IP address literal (IPv4 or IPv6, without brackets).
        port: TCP port; 0 lets the system pick a free one.
    """

    host: str
    port: int

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    @property
    def is_loopback(self) -> bool:
        return _is_loopback(ipaddress.ip_address(self.host))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.is_ipv6 else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> BindAddress:
        """Parse ``HOST:PORT``, ``[IPV6]:PORT``, ``:PORT`` (loopback) or ``PORT`` (loopback).

        Raises:
            ConfigError: not an address and port; the message shows the accepted forms.
        """
        fix = (
            f"bind address {text!r} is not ADDR:PORT; use e.g. 127.0.0.1:8080, 0.0.0.0:8080 "
            "or [::]:8080"
        )
        raw = text.strip()
        if raw.isascii() and raw.isdigit():
            host, port_text = "127.0.0.1", raw
        elif raw.startswith("["):
            host, sep, rest = raw[1:].partition("]")
            if not sep or not rest.startswith(":"):
                raise ConfigError(fix)
            port_text = rest[1:]
        else:
            host, sep, port_text = raw.rpartition(":")
            if not sep or ":" in host:
                raise ConfigError(fix)
            host = host or "127.0.0.1"
        host = _LOCAL_NAMES.get(host.lower(), host)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(
                f"bind address {text!r}: {host!r} is not an IP address; use 127.0.0.1 (this "
                "machine only), 0.0.0.0 (every interface) or the address of one interface"
            ) from None
        if not _is_port(port_text):
            raise ConfigError(f"bind address {text!r}: the port must be a number 0-65535, e.g. :8080")
        return cls(str(address), int(port_text))


def read_token(token: str | None, token_file: str | os.PathLike[str] | None) -> str | None:
    """Return the token given directly or read from a file's first line (whitespace stripped).

    The token travels in URLs (``?token=``, all an <img> or EventSource can send) and in an
    HTTP header, so it may hold only characters that mean the same in both: letters, digits
    and ``- _ . ~ + / =`` (hex, base64 and base64url tokens all qualify).

    Raises:
        ConfigError: both given, the file cannot be read, or the token is empty or holds other
            characters.
    """
    if token is not None and token_file is not None:
        raise ConfigError("web: give either token or token_file, not both")
    if token_file is not None:
        # The first line: an editor's trailing newline or a comment below it is fine.
        token = read_secret(token_file, "web: token_file")
    if token is None:
        return None
    token = token.strip()
    if not token:
        raise ConfigError("web: the token is empty; put a random string in it (openssl rand -hex 24)")
    if not _TOKEN_CHARACTERS.fullmatch(token):
        raise ConfigError(
            "web: the token may hold only letters, digits and - _ . ~ + / = (it travels in "
            "URLs); make one with `openssl rand -hex 24`"
        )
    return token


class AccessPolicy:
    """Decides whether a request may see the view.

    Args:
        bind: The address the server listens on.
        token: Required on every route but ``/healthz`` when set.
        insecure: Allow a non-loopback bind without a token.

    Raises:
        ConfigError: a non-loopback bind with neither a token nor ``insecure``.
    """

    def __init__(self, bind: BindAddress, token: str | None, *, insecure: bool = False) -> None:
        if token is None and not bind.is_loopback and not insecure:
            raise ConfigError(
                f"web: binding {bind} lets other machines watch the camera; give it a token "
                "(--web-token-file FILE, [web] token_file, or token_file=/token= in Python), or "
                "allow it without one ([web] insecure = true, insecure=True in Python)"
            )
        if token is None and not bind.is_loopback:
            log.warning("web view on %s has no token: anyone on the network can watch", bind)
        self.bind = bind
        self._token = token.encode("utf-8") if token is not None else None

    @property
    def needs_token(self) -> bool:
        return self._token is not None

    def allows(self, authorization: str | None, query_token: str | None) -> bool:
        """Return True if the request carries the token (or none is needed).

        The token may come as ``Authorization: Bearer TOKEN`` or as ``?token=TOKEN`` (what a
        browser's <img> and EventSource can send). The comparison takes the same time wherever
        the first wrong character is, so the token cannot be guessed byte by byte.
        """
        if self._token is None:
            return True
        offered = None
        if authorization is not None:
            scheme, _, value = authorization.strip().partition(" ")
            if scheme.lower() == "bearer":
                offered = value.strip()
        if offered is None:
            offered = query_token
        if offered is None:
            return False
        return hmac.compare_digest(offered.encode("utf-8", "surrogateescape"), self._token)

    def host_allowed(self, host_header: str | None) -> bool:
        """Refuse foreign Host names on a tokenless loopback server (DNS rebinding).

        A web page from elsewhere can point its own host name at 127.0.0.1 and then read this
        server as same-origin; the browser still sends that foreign name as Host, so a loopback
        server without a token answers only to loopback names.
        """
        if self._token is not None or not self.bind.is_loopback or host_header is None:
            return True
        host = host_header.strip().lower()
        if host.startswith("["):
            host = host[1:].partition("]")[0]
        else:
            host = host.rpartition(":")[0] if host.count(":") == 1 else host
        if host in _LOCAL_NAMES:
            return True
        try:
            return _is_loopback(ipaddress.ip_address(host))
        except ValueError:
            return False
