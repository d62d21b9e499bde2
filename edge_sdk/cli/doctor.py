"""`edge-classify doctor`: a table of what works on this machine and how to fix what does not."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import click

from edge_sdk import config as cfg


@click.command("doctor")
@click.option("--config", "config_path", type=click.Path(path_type=Path, readable=False), default=None,
              help="Config to check against (default: $EDGE_SDK_CONFIG, else "
                   "/etc/edge-sdk/config.toml, else the defaults).")
@click.option("--runs", type=click.IntRange(min=0), default=10, show_default=True,
              help="Timed inferences per runtime (0: only check the model loads).")
@click.option("--json", "as_json", is_flag=True, help="The checks as a JSON list.")
def doctor(config_path: Path | None, runs: int, as_json: bool) -> None:
    """Check cameras, display, runtimes, model, broker, disk and temperature.

    Exits 1 if any check failed; each failure says how to fix it.
    """
    from edge_sdk.doctor import format_table, run_checks

    rows = run_checks(cfg.find(config_path), speed_runs=runs)
    if as_json:
        click.echo(json.dumps([asdict(r) for r in rows], indent=1))
    else:
        click.echo(format_table(rows))
    if any(r.status == "FAIL" for r in rows):
        sys.exit(1)
