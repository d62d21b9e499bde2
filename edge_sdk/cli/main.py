"""Entry point of `edge-classify`: the live run and its subcommands."""

from __future__ import annotations

import click

from edge_sdk.cli.classify import classify
from edge_sdk.cli.errors import FriendlyGroup
from edge_sdk.cli.models import models


@click.group(cls=FriendlyGroup, invoke_without_command=True)
@click.version_option(package_name="edge-sdk")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Live image classification on a camera, a stream or a video file."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


cli.add_command(models)
cli.add_command(classify)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="edge-classify")
