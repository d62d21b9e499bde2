"""A real sd_notify receiver: an AF_UNIX datagram socket, as systemd's $NOTIFY_SOCKET is."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


class NotifyListener:
    """Binds a datagram socket in a short temporary folder and records every message.

    `messages` holds (monotonic time, fields) pairs, fields being the datagram's lines.
    """

    def __init__(self) -> None:
        # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer.
        self.folder = Path(tempfile.mkdtemp(prefix="sdn-", dir="/tmp"))
        self.path = str(self.folder / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, list[str]]] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._recv, daemon=True, name="notify-listener")
        self._thread.start()

    def _recv(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._cond:
                self.messages.append((time.monotonic(), data.decode().split("\n")))
                self._cond.notify_all()

    def fields(self) -> list[str]:
        """Every field received, in order."""
        with self._cond:
            return [f for _, fs in self.messages for f in fs]

    def times(self, field: str) -> list[float]:
        """When each message containing `field` arrived."""
        with self._cond:
            return [t for t, fs in self.messages if field in fs]

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate([f for _, fs in self.messages for f in fs]):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def listener() -> Iterator[NotifyListener]:
    """A NotifyListener for the test, closed after it (import it into a test module to use)."""
    listen = NotifyListener()
    yield listen
    listen.close()
