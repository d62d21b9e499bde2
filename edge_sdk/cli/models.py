"""`edge-classify models ...`: list, inspect, build and evaluate models."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edge_sdk.cli.errors import FriendlyGroup
from edge_sdk.models import ZOO, store
from edge_sdk.runtimes import runtime_format

mirror_option = click.option(
    "--mirror",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="EDGE_SDK_MODEL_MIRROR",
    help="Folder holding the source model files [env: EDGE_SDK_MODEL_MIRROR].",
)


@click.group(cls=FriendlyGroup)
def models() -> None:
    """List, inspect, build and evaluate models."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_models(as_json: bool) -> None:
    """List the zoo's models and which of them are built."""
    rows = []
    for entry in ZOO.values():
        built = [
            f"{prec} {fmt}"
            for fmt, prec in (("tflite", "int8"), ("tflite", "float"), ("onnx", "int8"))
            if store.built_path(entry.name, fmt, prec).is_file()  # type: ignore[arg-type]
        ]
        rows.append(
            {
                "name": entry.name,
                "description": entry.description,
                "source": entry.source,
                "built": "prebuilt" if entry.prebuilt else (", ".join(built) or "-"),
                "url": entry.url,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    click.echo(f"{'name':<22}{'built':<26}description")
    for row in rows:
        click.echo(f"{row['name']:<22}{row['built']:<26}{row['description']}")
    click.echo(f"\nbuilt models live in {store.home_dir() / 'models'}; sources are read from the mirror")


@models.command("info")
@click.argument("model")
@click.option("--runtime", default="litert", show_default=True, help="Runtime whose file to show.")
@click.option("--precision", default="int8", show_default=True, type=click.Choice(["int8", "float"]))
@click.option("--card", "show_card", is_flag=True, help="Print the full model card as JSON.")
@mirror_option
def info(model: str, runtime: str, precision: str, show_card: bool, mirror: Path | None) -> None:
    """Show a model's file, card and tensors."""
    from edge_sdk.classifier import Classifier

    path, card = store.resolve(model, runtime_format(runtime), precision, mirror=mirror)  # type: ignore[arg-type]
    if show_card:
        click.echo(card.to_json())
        return
    with Classifier.from_model(model, runtime=runtime, precision=precision, mirror=mirror) as clf:
        spec_in, spec_out = clf.runtime.input_spec, clf.runtime.output_spec
    click.echo(f"model:      {card.name} ({card.precision})")
    click.echo(f"file:       {path} ({path.stat().st_size / 1e6:.2f} MB)")
    click.echo(f"input:      {spec_in.shape} {spec_in.dtype} scale={spec_in.scale:g} zp={spec_in.zero_point}")
    click.echo(f"output:     {spec_out.shape} {spec_out.dtype} ({card.output_kind})")
    click.echo(
        f"preprocess: shorter side {card.resize_shorter or 'stretch'}, centre crop "
        f"{card.input_size[0]}x{card.input_size[1]}, {card.colour}, mean {card.mean}, std {card.std}"
    )
    click.echo(f"labels:     {len(card.labels)} (+{card.label_offset} offset)")
