"""Turn edge-sdk errors into one-line command-line errors instead of tracebacks."""

from __future__ import annotations

import os
from typing import IO, Any

import click

from edge_sdk.errors import EdgeSDKError


class OneLineError(click.ClickException):
    """click's "Error: message" line; under systemd with the syslog priority of an error.

    Log lines carry their priority (``<3>``...) when stderr is the journal, and so must the
    line that says why the service could not start: ``journalctl -p warning`` shows only
    lines at warning or above, and a line without a prefix counts as info.
    """

    def show(self, file: IO[Any] | None = None) -> None:
        prefix = "<3>" if os.environ.get("JOURNAL_STREAM") else ""
        click.echo(f"{prefix}Error: {self.format_message()}", file=file, err=file is None)


class FriendlyGroup(click.Group):
    """A click group that prints an `EdgeSDKError` as one line and exits with status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgeSDKError as exc:
            raise OneLineError(str(exc)) from None
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None


#: sysexits.h EX_CONFIG: `run` exits with it on a configuration error, and the unit's
#: RestartPreventExitStatus keeps systemd from restarting into the same error every 5 s.
EX_CONFIG = 78


class ConfigProblem(OneLineError):
    """A one-line configuration error that exits with `EX_CONFIG`."""

    exit_code = EX_CONFIG
