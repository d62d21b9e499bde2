"""The MQTT sink's spool: predictions the broker has not acknowledged, kept in a file for the next start.

Without it, a service stopped while its broker is away (a restart, a reboot, a new config)
drops what it had queued, and a power cut drops it too. With ``[mqtt] spool = PATH``,
`MqttSink.close` writes them there and the next sink on that path queues them first, in their
order, before its own. Each line is one prediction: ``{"frame": N, "payload": "<the JSON
sent>"}``.

While predictions wait unacknowledged (an outage, or a broker that stopped answering), the sink
also checkpoints them every ``spool_every`` seconds, so a power cut or a kill loses at most the
last of those seconds. A checkpoint appends the predictions made since the one before (each
prediction is written once, which spares an SD card), and rewrites the file only when most of
its lines were delivered meanwhile; once all of them were, the file is removed. Healthy, with
acknowledgements coming, no checkpoint writes anything. Each write is synced to the disk. A
file is replaced whole by writing it beside, then renaming it, so a crash mid-write leaves the
previous one; an append cut short by a power cut leaves a last line with no newline, which the
next start drops (it is the one prediction that was being written). The file stays in place
until a checkpoint or a close rewrites or removes it: a crash before then sends its predictions
again at the next start, so a consumer may see one twice, as QoS 1 and 2 across a restart
allow, but never none.

A spool file this code did not write whole (a damaged line, bytes that are not UTF-8, or a
file that could not be read) is never replaced or removed: it is renamed aside to
``PATH.damaged`` first, with a warning naming it, after its good lines were queued.

One sink at a time has a spool: a second, in this process or another (a service started by
hand beside the running unit, say), would send what it holds a second time and then overwrite
the first one's saves with its own, losing them. So a sink claims the file by an exclusive lock
on ``.NAME.lock`` beside it, which the kernel lets go of when the process ends however it ends,
and a second sink on the file is refused at its start (a `SinkError`) with the holder's
process id. A clean stop removes the lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import stat
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from edge_sdk.errors import ConfigError, SinkError

log = logging.getLogger("edge_sdk.mqtt")


class MqttSpool:
    """One spool file.

    Args:
        path: The file; its folder must exist and be writable, and the file, if there, must
            be a regular file.

    Raises:
        ConfigError: the folder is missing, not writable or cannot be looked into, or the
            path is a folder or another non-file (a FIFO would hang the start).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        folder = self.path.parent
        try:
            info = self.path.stat()
        except FileNotFoundError:
            info = None
        except OSError as exc:
            raise ConfigError(f"spool {self.path}: cannot look at it ({exc.strerror}); choose a "
                              "path in a folder this user owns") from None
        if info is not None and stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"spool {self.path} is a folder; give a file name in it, e.g. "
                              f"{self.path / 'mqtt-spool.jsonl'}")
        if info is not None and not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"spool {self.path} is not a regular file; give the path of a "
                              "file (or of none yet)")
        if not folder.is_dir():
            raise ConfigError(f"spool {self.path}: no folder {folder}; create it or choose "
                              "another path")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"spool {self.path}: this user cannot write in {folder}; choose a "
                              "folder it owns (the service's is /var/lib/edge-sdk)")
        #: Writes to the disk (checkpoints and the stop's), for those who count an SD card's.
        self.writes = 0
        # What the file holds: how many lines, and the last one as the very tuple the sink
        # queued, so a checkpoint finds where the queue goes on past the file by identity.
        self._lines = 0
        self._last: tuple[int, str] | None = None
        self._saving = threading.Lock()  # one writer at a time: a checkpoint or the stop
        self._final = False  # the stop's save is written: no checkpoint may replace it
        self._failing = False  # a checkpoint failed; logged once until one succeeds
        self._lock_fd: int | None = None

    @property
    def lock_path(self) -> Path:
        """The file whose lock makes one sink the spool's only user (``.NAME.lock`` beside it)."""
        return self.path.with_name(f".{self.path.name}.lock")

    def claim(self) -> None:
        """Make this the spool's only user until `release` (or the end of the process).

        A file system that has no locks, or a folder where the lock file cannot be made, only
        costs the guard: it is logged and the spool works unguarded.

        Raises:
            SinkError: another sink, in this process or another, has the spool. Not a
                ConfigError: the other may end (a run started by hand), and systemd restarts
                the unit on a SinkError's exit status 1 but not on a config error's 78.
        """
        if self._lock_fd is not None:
            return
        while True:
            try:
                fd = _open_lock(self.lock_path)
            except OSError as exc:
                self._unguarded(f"cannot make {self.lock_path} ({exc.strerror})")
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _pid_in(fd)
                os.close(fd)
                by = f"process {pid}" if pid else "another process"
                raise SinkError(f"spool {self.path} is in use by another MQTT sink ({by}); give "
                                "each sink its own spool, or stop the other first (a running "
                                "service: sudo systemctl stop edge-classify)") from None
            except OSError as exc:
                os.close(fd)
                self._unguarded(f"its file system does not lock {self.lock_path} ({exc.strerror})")
                return
            # The holder before us may have removed the file between our open and our lock:
            # then we hold a name no one else sees, and take the new file instead.
            try:
                current = os.stat(self.lock_path)
            except FileNotFoundError:
                current = None
            held = os.fstat(fd)
            if current is not None and (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
                if os.access(self.lock_path, os.W_OK):
                    break
                # Another user's (a run as root left it), so it would keep that run's process
                # id: ours to remove now that we lock it, and to make anew as this user.
                try:
                    self.lock_path.unlink()
                except OSError:
                    break  # locked all the same, only without our process id in it
            os.close(fd)
        with contextlib.suppress(OSError):  # the id only makes the refusal's message better
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _unguarded(self, why: str) -> None:
        log.warning("MQTT: the spool %s: %s; a second sink on it would not be refused",
                    self.path, why)

    def release(self) -> None:
        """Let another sink claim the spool; removes the lock file. Safe to call twice."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        # Removed while still locked, so a sink that opened it meanwhile sees it is gone.
        with contextlib.suppress(OSError):
            self.lock_path.unlink()
        os.close(fd)

    def holder(self) -> int | None:
        """The process id of the sink that has the spool claimed now, or None (0 if unknown).

        Looks only: neither makes the lock file nor claims the spool.
        """
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _pid_in(fd)
        except OSError:
            return None
        finally:
            os.close(fd)  # also lets go of our shared lock, if we got it
        return None

    def load(self) -> list[tuple[int, str]]:
        """The predictions kept, oldest first, as (frame index, payload); [] when none.

        A line that is not a kept prediction costs only itself; if there was one, or the file
        could not be read, it is renamed aside (see the module docstring) so no later save
        replaces what this code could not read.
        """
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            self._set_aside(f"cannot read it ({exc.strerror})")
            return []
        kept: list[tuple[int, str]] = []
        bad = 0
        lines = data.splitlines()
        torn = bool(lines) and not data.endswith(b"\n")
        if torn:  # the append a power cut caught: ours, not damage; cut it off before appending
            lines.pop()
        for line in lines:
            try:
                entry = json.loads(line.decode("utf-8"))
                frame, payload = entry["frame"], entry["payload"]
            except (ValueError, TypeError, KeyError):  # UnicodeDecodeError is a ValueError
                bad += 1
                continue
            if isinstance(frame, int) and isinstance(payload, str):
                kept.append((frame, payload))
            else:
                bad += 1
        if bad:
            self._set_aside(f"{bad} of its {bad + len(kept)} lines are no kept prediction; "
                            f"queued the other {len(kept)}")
            return kept
        if torn:
            try:
                os.truncate(self.path, data.rindex(b"\n") + 1 if lines else 0)
            except OSError as exc:
                self._set_aside(f"its last line was cut short and it cannot be cut off ({exc.strerror})")
                return kept
            log.warning("MQTT: the spool %s ended in a line cut short (a power cut while it was "
                        "written); dropped that prediction, queued the other %d", self.path, len(kept))
        self._lines = len(kept)
        self._last = kept[-1] if kept else None
        return kept

    @property
    def holds(self) -> bool:
        """Whether the file holds predictions (loaded at the start, or written since)."""
        return self._lines > 0

    @property
    def aside(self) -> Path:
        """Where a spool this code could not read whole is moved (``PATH.damaged``)."""
        return self.path.with_name(self.path.name + ".damaged")

    def _set_aside(self, why: str) -> None:
        aside = self.aside
        try:
            os.replace(self.path, aside)
        except OSError as exc:
            raise ConfigError(f"spool {self.path}: {why}, and it cannot be renamed aside "
                              f"({exc.strerror}); move it away or fix it") from None
        log.warning("MQTT: the spool %s: %s; moved it to %s", self.path, why, aside)

    def save(self, messages: Sequence[tuple[int, str]]) -> None:
        """The stop's: keep `messages` (replacing what was kept); with none, remove the file.

        No checkpoint writes after it.

        Raises:
            OSError: it could not be written (the disk full, say) or removed; the previous
                file stays.
        """
        with self._saving:
            self._final = True
            self._write(messages)

    def checkpoint(self, messages: Sequence[tuple[int, str]], *, stalled: bool) -> bool:
        """Make the file hold what a power cut now would lose, writing as little as it can.

        Args:
            messages: The predictions not acknowledged yet, oldest first, as the sink holds
                them (the same tuples, from one call to the next).
            stalled: Whether they are waiting (no connection, or no acknowledgement for a
                while). If not, the file is only removed once all it held was delivered, or
                shrunk when most of it was.

        Returns:
            False if the stop's save came first or the write failed (logged once until one
            succeeds); True otherwise, written or with nothing to write.
        """
        with self._saving:
            if self._final:
                return False
            after = self._after_last(messages)
            try:
                if after is None:
                    # With its last line delivered, the file holds only delivered lines (the
                    # queue is first in, first out), so `stalled` rewrites and healthy removes.
                    if stalled or self.holds:
                        self._write(messages if stalled else [])
                elif self._lines > 2 * len(messages) + 64:
                    self._write(messages)  # mostly delivered lines: shrink it
                elif stalled:
                    self._append(messages[after:])
            except OSError as exc:
                if not self._failing:
                    log.error("MQTT: cannot write the spool %s (%s); a power cut would lose the "
                              "%d predictions waiting for the broker: free space or choose "
                              "another spool", self.path, exc.strerror or exc, len(messages))
                self._failing = True
                return False
            if self._failing:
                log.info("MQTT: the spool %s is written again", self.path)
                self._failing = False
            return True

    def _after_last(self, messages: Sequence[tuple[int, str]]) -> int | None:
        """Where `messages` go on past the file's last line, if it is still among them."""
        if self._last is None:
            return None
        for i in range(len(messages) - 1, -1, -1):  # from the end: new ones are few
            if messages[i] is self._last:
                return i + 1
        return None

    def _append(self, messages: Sequence[tuple[int, str]]) -> None:
        if not messages:
            return
        with self.path.open("a", encoding="utf-8") as f:
            _put(f, messages)
        self.writes += 1
        self._lines += len(messages)
        self._last = messages[-1]

    def _write(self, messages: Sequence[tuple[int, str]]) -> None:
        if not messages:
            if self.holds or self.path.exists():
                self.path.unlink(missing_ok=True)
                self.writes += 1
            self._lines, self._last = 0, None
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            with tmp.open("w", encoding="utf-8") as f:
                _put(f, messages)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _sync_folder(self.path.parent)
        self.writes += 1
        self._lines, self._last = len(messages), messages[-1]


def _put(f: TextIO, messages: Sequence[tuple[int, str]]) -> None:
    """Write `messages` as lines to `f` and sync them to the disk."""
    f.write("".join(json.dumps({"frame": frame, "payload": payload}) + "\n"
                    for frame, payload in messages))
    f.flush()
    os.fsync(f.fileno())


def _open_lock(path: Path) -> int:
    """Open (or make) a lock file; read-only if it is another user's (a run as root left it)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:
        return os.open(path, os.O_RDONLY)  # a lock needs no write access


def _pid_in(fd: int) -> int:
    """The process id a claim wrote in the lock file open as `fd`; 0 if there is none."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return 0
    return int(text) if text.isdigit() else 0


def _sync_folder(folder: Path) -> None:
    """Sync a folder's entries, so a power cut does not undo a rename in it."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # not every file system lets a folder be opened; the data itself is synced
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["MqttSpool"]
