"""Reading secrets (passwords, tokens) from files or systemd credentials, never from config text.

systemd's `LoadCredential=NAME:PATH` hands a service its secrets in the folder named by
`$CREDENTIALS_DIRECTORY` (readable only by the service, gone when it stops); that is how the unit
passes the MQTT password. Outside systemd a plain file (mode 0600) does the same job.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from edge_sdk.errors import ConfigError

log = logging.getLogger(__name__)

#: Name of the systemd credential holding the MQTT password (`LoadCredential=mqtt-password:...`).
MQTT_PASSWORD_CREDENTIAL = "mqtt-password"


def credential_path(name: str) -> Path | None:
    """Return the path of systemd credential `name` if the service was given it, else None."""
    folder = os.environ.get("CREDENTIALS_DIRECTORY")
    if not folder:
        return None
    path = Path(folder) / name
    return path if path.is_file() else None


def read_secret(path: str | os.PathLike[str], what: str) -> str:
    """Return the first line of a secret file, without its line ending.

    Args:
        path: The file.
        what: What the secret is for, for the error message (e.g. "the MQTT password_file").

    Raises:
        ConfigError: the file is missing, unreadable, empty or not text.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {os.fspath(path)!r} does not exist; create it (mode 0600)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read {what} {os.fspath(path)!r} ({exc.__class__.__name__}); "
            "check its owner and mode (readable by the service user)"
        ) from None
    secret = text.splitlines()[0] if text else ""
    if not secret:
        raise ConfigError(f"{what} {os.fspath(path)!r} is empty; write the secret on its first line")
    mode = Path(path).stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        # Not refused: a file shared on purpose (a group that runs several services) still works.
        log.warning(
            "%s %r can be read by other users (mode %04o); chmod 600 it",
            what, os.fspath(path), stat.S_IMODE(mode),
        )
    return secret
