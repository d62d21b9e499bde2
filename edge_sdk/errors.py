"""Exceptions raised by edge-sdk.

Every `EdgeSDKError` message is written for the person running the program: it says what went
wrong and what to do about it, in one line, so the CLI and the service can print it as is.
Bad arguments to a Python API raise the built-in `ValueError` / `TypeError` instead.
"""

from __future__ import annotations


class EdgeSDKError(Exception):
    """Base of every error edge-sdk raises on purpose; its message names the fix."""


class ConfigError(EdgeSDKError):
    """A configuration value, option name or URI is wrong."""


class ModelError(EdgeSDKError):
    """A model file, its card or its source is missing, corrupt or inconsistent."""


class SourceError(EdgeSDKError):
    """A frame source cannot be opened or has failed for good."""


class SourceContractError(SourceError):
    """A source's `read` returned something that is not a Frame (or a Frame with a bad image).

    A bug in the source's code, not a camera or network failure: reopening the source would
    give the same, so a live source is not reconnected after it.
    """


class SinkError(EdgeSDKError):
    """A sink cannot be set up (bad address, unreachable broker at start-up, ...)."""


class BackendError(EdgeSDKError):
    """A backend (runtime, camera stack, ...) is installed but cannot handle this input."""


class BackendUnavailable(BackendError):
    """An optional package a backend needs is not installed; the message names the `pip install`."""


#: What to do about a file the process may not read, for messages.
PERMISSION_FIX = "permission denied; give the user running edge-classify read access (chmod/chown)"


def file_problem(exc: OSError) -> str:
    """Why a file could not be read, as a message part: the fix for a permission problem,
    else the system's reason ("No such file or directory", ...)."""
    if isinstance(exc, PermissionError):
        return PERMISSION_FIX
    return exc.strerror or str(exc)
