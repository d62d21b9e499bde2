"""Entry point of `edge-classify`: the live run and its subcommands."""

from __future__ import annotations

from typing import Any

import click

from edge_sdk import runtimes
from edge_sdk.cli import service
from edge_sdk.cli.classify import classify
from edge_sdk.cli.doctor import doctor
from edge_sdk.cli.errors import FriendlyGroup
from edge_sdk.cli.models import models
from edge_sdk.cli.run import LIVE_OPTIONS, live_options, run_live


@click.group(cls=FriendlyGroup, invoke_without_command=True)
@click.version_option(package_name="edge-sdk")
@live_options
@click.pass_context
def cli(ctx: click.Context, /, **live: Any) -> None:
    """Live image classification on a camera, a stream or a video file.

    \b
    edge-classify --camera               classify camera 0 in a window
    edge-classify --source clip.mp4 --no-display --json
    edge-classify COMMAND --help         the subcommands below
    """
    if ctx.invoked_subcommand is None:
        if live["camera"] is None and live["source"] is None:
            click.echo(ctx.get_help())
            return
        run_live(**{name: live[name] for name in LIVE_OPTIONS})
    elif live["camera"] is not None or live["source"] is not None:
        raise click.UsageError("--camera/--source start a live run: give them without a command")


cli.add_command(models)
cli.add_command(classify)
cli.add_command(service.check_config)
cli.add_command(service.run)
cli.add_command(doctor)


def main() -> None:
    """Console-script entry point."""
    runtimes.capture_native_logs = True  # this process's stderr is ours: keep errors one line
    cli(prog_name="edge-classify")


if __name__ == "__main__":  # python -m edge_sdk.cli.main
    main()
