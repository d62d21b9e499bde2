"""The MQTT sink's spool: predictions a stop could not deliver, kept in a file for the next start.

Without it, a service stopped while its broker is away (a restart, a reboot, a new config)
drops what it had queued. With ``[mqtt] spool = PATH``, `MqttSink.close` writes them there
and the next sink on that path queues them first, in their order, before its own. Each line is
one prediction: ``{"frame": N, "payload": "<the JSON sent>"}``. The file is replaced whole
(written beside it, then renamed), so a crash mid-write leaves the previous one. It stays in
place until a close rewrites it (or removes it, with nothing left to keep): a crash before
then sends its predictions again at the next start, so a consumer may see one twice, as QoS 1
and 2 across a restart allow, but never none. What a crash or power cut catches in memory is
not in it.

A spool file this code did not write whole (a damaged line, bytes that are not UTF-8, or a
file that could not be read) is never replaced or removed: it is renamed aside to
``PATH.damaged`` first, with a warning naming it, after its good lines were queued.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from edge_sdk.errors import ConfigError

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
        for line in data.splitlines():
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
        """Keep `messages` (replacing what was kept); with none, remove the file.

        Raises:
            OSError: it could not be written (the disk full, say) or removed; the previous
                file stays.
        """
        if not messages:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            with tmp.open("w", encoding="utf-8") as f:
                for frame, payload in messages:
                    f.write(json.dumps({"frame": frame, "payload": payload}) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


__all__ = ["MqttSpool"]
