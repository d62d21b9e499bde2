"""`edge-classify classify IMAGE...`: print the top classes of image files."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edge_sdk.cli.models import mirror_option
from edge_sdk.errors import SourceError
from edge_sdk.models.store import PRECISIONS
from edge_sdk.preprocess import read_image
from edge_sdk.runtimes import MAX_THREADS


@click.command("classify")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False))
@click.option("--model", default="squeezenet1.1", show_default=True, help="Zoo name or model file.")
@click.option("--runtime", default="litert", show_default=True, help="litert, onnxruntime or opencv.")
@click.option("--precision", default="int8", show_default=True, type=click.Choice(PRECISIONS))
@click.option("--threads", type=click.IntRange(min=1, max=MAX_THREADS), default=None, help="Runtime threads.")
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
@mirror_option
def classify(
    images: tuple[Path, ...],
    model: str,
    runtime: str,
    precision: str,
    threads: int | None,
    top_k: int,
    as_json: bool,
    mirror: Path | None,
) -> None:
    """Classify image files and print the top classes of each.

    Of several files, one that cannot be read is reported on stderr and the others are still
    classified; the exit status is then 1.
    """
    from edge_sdk.classifier import Classifier

    failed: list[str] = []
    with Classifier.from_model(
        model, runtime=runtime, precision=precision, num_threads=threads, top_k=top_k, mirror=mirror
    ) as clf:
        for path in images:
            try:
                image = read_image(path)
            except SourceError as exc:
                if len(images) == 1:
                    raise  # its own one line is the whole story
                click.echo(f"Error: {exc}", err=True)
                failed.append(str(path))
                continue
            prediction = clf.classify(image)
            if as_json:
                click.echo(json.dumps({"file": str(path), **prediction.to_dict()}))
                continue
            click.echo(f"{path}:")
            for label in prediction.top:
                click.echo(f"  {label.score:6.1%}  {label.index:4d}  {label.name}")
    if failed:
        raise SourceError(f"{len(failed)} of {len(images)} images could not be read (first: {failed[0]})")
