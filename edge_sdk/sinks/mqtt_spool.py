"""The MQTT sink's spool: predictions a stop could not deliver, kept in a file for the next start.

Without it, a service stopped while its broker is away (a restart, a reboot, a new config)
drops what it had queued. With ``[mqtt] spool = PATH``, `MqttSink.close` writes them there
and the next sink on that path queues them first, in their order, before its own. Each line is
one prediction: ``{"frame": N, "payload": "<the JSON sent>"}``. The file is replaced whole
(written beside it, then renamed), so a crash mid-write leaves the previous one. It stays in
place until a close rewrites it (or removes it, with nothing left to keep): a crash before
then sends its predictions again at the next start, so a consumer may see one twice, as QoS 1
allows, but never none. What a crash or power cut catches in memory is not in it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from edge_sdk.errors import ConfigError

log = logging.getLogger("edge_sdk.mqtt")


class MqttSpool:
    """One spool file.

    Args:
        path: The file; its folder must exist and be writable.

    Raises:
        ConfigError: the folder is missing or not writable, or the path is a folder.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        folder = self.path.parent
        if self.path.is_dir():
            raise ConfigError(f"spool {self.path} is a folder; give a file name in it, e.g. "
                              f"{self.path / 'mqtt-spool.jsonl'}")
        if not folder.is_dir():
            raise ConfigError(f"spool {self.path}: no folder {folder}; create it or choose "
                              "another path")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"spool {self.path}: this user cannot write in {folder}; choose a "
                              "folder it owns (the service's is /var/lib/edge-sdk)")

    def load(self) -> list[tuple[int, str]]:
        """The predictions kept, oldest first, as (frame index, payload); [] when none.

        A line that is not a kept prediction (a file edited or damaged by hand) is skipped and
        counted in a warning; an unreadable file is one warning, and nothing is loaded.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("MQTT: cannot read the spool %s (%s); starting without it", self.path, exc)
            return []
        kept: list[tuple[int, str]] = []
        bad = 0
        for line in text.splitlines():
            try:
                entry = json.loads(line)
                frame, payload = entry["frame"], entry["payload"]
            except (ValueError, TypeError, KeyError):
                bad += 1
                continue
            if isinstance(frame, int) and isinstance(payload, str):
                kept.append((frame, payload))
            else:
                bad += 1
        if bad:
            log.warning("MQTT: skipped %d line(s) of the spool %s that are no kept prediction",
                        bad, self.path)
        return kept

    def save(self, messages: Sequence[tuple[int, str]]) -> None:
        """Keep `messages` (replacing what was kept); with none, remove the file.

        Raises:
            OSError: it could not be written (the disk full, say); the previous file stays.
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
