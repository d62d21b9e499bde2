"""systemd's sd_notify protocol over $NOTIFY_SOCKET, with the standard library only.

A `Type=notify` unit tells systemd about its state by sending datagrams such as ``READY=1``,
``WATCHDOG=1``, ``STOPPING=1`` and ``STATUS=text`` to the AF_UNIX socket named in
$NOTIFY_SOCKET (a path, or an abstract-namespace name written with a leading ``@``). Outside
systemd the variable is unset and every call here is a no-op, so the same code runs anywhere.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends sd_notify messages; does nothing when not started by systemd.

    Args:
        address: The notify socket; default $NOTIFY_SOCKET (read when the notifier is made).
    """

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.address = address
        self._sock: socket.socket | None = None
        # Reentrant: SIGTERM's handler sends STOPPING on the main thread, which may have been
        # inside a send of its own when the signal came.
        self._lock = threading.RLock()
        self._warned = False
        self._stopping = False
        if address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        """Whether a notify socket was given (i.e. we run under systemd with Type=notify)."""
        return self._sock is not None

    def notify(self, *fields: str, stopping: bool = False, unless_stopping: bool = False) -> bool:
        """Send one datagram of newline-separated ``KEY=value`` fields.

        Args:
            fields: What to send.
            stopping: This is the STOPPING message: from now on `unless_stopping` ones are not
                sent. Noted under the same lock as the send, so a status the heartbeat thread
                is sending just then goes out before the STOPPING, never after it.
            unless_stopping: Send nothing once stopping.

        Returns:
            True if sent; False when disabled or the send failed (logged once, never raised:
            losing a status update must not take the service down).
        """
        if self._sock is None or not fields:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        data = "\n".join(fields).encode()
        try:
            with self._lock:
                if unless_stopping and self._stopping:
                    return False
                self._stopping = self._stopping or stopping
                # Never block: if systemd is not reading (a busy PID 1), a full socket queue
                # would hang this thread, and SIGTERM's handler with it, on the lock.
                self._sock.sendto(data, socket.MSG_DONTWAIT, target)
        except OSError as exc:
            if not self._warned:
                log.warning("cannot notify systemd at %s: %s", self.address, exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([_status_field(status)] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([_status_field(status)] if status else []),
                           stopping=True)

    def status(self, text: str) -> bool:
        """Send STATUS=text, except once stopping: the stop's own status ("stopping on
        SIGTERM", "failed: ...") then stays what `systemctl status` shows, rather than a rate
        the heartbeat sends while the sinks drain. Only `stopping` changes it after that."""
        return self.notify(_status_field(text), unless_stopping=True)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status_field(text: str) -> str:
    # One line: a newline (e.g. from a source URI in an error) would start a new field, such
    # as a bogus READY=1 or WATCHDOG_USEC=0.
    return "STATUS=" + " ".join(text.split())


def watchdog_seconds() -> float | None:
    """Return the watchdog timeout systemd set for this process, or None when there is none.

    systemd sets $WATCHDOG_USEC (and $WATCHDOG_PID, the process it is meant for) when the unit
    has WatchdogSec=. A child process inheriting the variables must not answer for its parent.
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec:
        return None
    if not (usec.isascii() and usec.isdigit()):
        log.warning("WATCHDOG_USEC=%r is not a number of microseconds; running without the "
                    "systemd watchdog", usec)
        return None
    if int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        log.info("the systemd watchdog is meant for process %s, not this one; not pinging it", pid)
        return None
    if int(usec) < _MIN_WATCHDOG_USEC:
        # Below a second the pings (a quarter of it apart) would keep a core busy.
        log.warning("WATCHDOG_USEC=%s is under a second; pinging as for one second", usec)
        return _MIN_WATCHDOG_USEC / 1e6
    return int(usec) / 1e6


#: The shortest watchdog timeout honoured; systemd's WatchdogSec is whole seconds in practice.
_MIN_WATCHDOG_USEC = 1_000_000
