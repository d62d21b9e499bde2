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

from edge_sdk.errors import ConfigError, file_problem

log = logging.getLogger(__name__)

#: Name of the systemd credential holding the MQTT password (`LoadCredential=mqtt-password:...`).
MQTT_PASSWORD_CREDENTIAL = "mqtt-password"
#: A secret is one line; a file this large is not one.
_MAX_SECRET_BYTES = 64 * 1024


def credential_path(name: str) -> Path | None:
    """Return the path of systemd credential `name` if the service was given it, else None."""
    folder = os.environ.get("CREDENTIALS_DIRECTORY")
    if not folder:
        return None
    path = Path(folder) / name
    return path if path.is_file() else None


def read_secret(path: str | os.PathLike[str], what: str) -> str:
    """Return the first line of a secret file, without its line ending.

    Only the first 64 KiB are read, and only from a regular file: a device such as /dev/zero
    given by mistake would otherwise be read for ever.

    Args:
        path: The file.
        what: What the secret is for, for the error message (e.g. "the MQTT password_file").

    Raises:
        ConfigError: the file is missing, not a regular file, unreadable, empty or not UTF-8
            text.
    """
    name = os.fspath(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{what} {name!r} is not a regular file; give a file holding the secret")
        with open(path, "rb") as file:
            text = file.read(_MAX_SECRET_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {name!r} does not exist; create it (mode 0600)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {name!r} is not UTF-8 text; write the secret on its first line") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {name!r}: {file_problem(exc)}") from None
    secret = text.splitlines()[0] if text else ""
    if not secret and text.strip():
        raise ConfigError(f"{what} {name!r} has an empty first line; write the secret on its first "
                          "line (the rest of the file is ignored)")
    if not secret:
        raise ConfigError(f"{what} {name!r} is empty; write the secret on its first line")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        # Not refused: a file shared on purpose (a group that runs several services) still works.
        log.warning(
            "%s %r can be read by other users (mode %04o); chmod 600 it",
            what, name, stat.S_IMODE(info.st_mode),
        )
    return secret
