"""Turn edge-sdk errors into one-line command-line errors instead of tracebacks."""

from __future__ import annotations

from typing import Any

import click

from edge_sdk.errors import EdgeSDKError


class FriendlyGroup(click.Group):
    """A click group that prints an `EdgeSDKError` as one line and exits with status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgeSDKError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None


#: sysexits.h EX_CONFIG: `run` exits with it on a configuration error, and the unit's
#: RestartPreventExitStatus keeps systemd from restarting into the same error every 5 s.
EX_CONFIG = 78


class ConfigProblem(click.ClickException):
    """A one-line configuration error that exits with `EX_CONFIG`."""

    exit_code = EX_CONFIG
