"""`edge-classify models ...`: list, inspect, build and evaluate models."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edge_sdk.cli.errors import FriendlyGroup
from edge_sdk.models import ZOO, store
from edge_sdk.runtimes import MAX_THREADS, runtime_format

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
    name_width = max(len("name"), *(len(row["name"]) for row in rows)) + 2
    built_width = max(len("built"), *(len(row["built"]) for row in rows)) + 2
    click.echo(f"{'name':<{name_width}}{'built':<{built_width}}description")
    for row in rows:
        click.echo(f"{row['name']:<{name_width}}{row['built']:<{built_width}}{row['description']}")
    click.echo(f"\nbuilt models live in {store.home_dir() / 'models'}; sources are read from the mirror")


@models.command("info")
@click.argument("model")
@click.option("--runtime", default="litert", show_default=True, help="Runtime whose file to show.")
@click.option("--precision", default="int8", show_default=True, type=click.Choice(store.PRECISIONS))
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
    # Quantization parameters only where the file has them: onnxruntime reports none for the
    # int8 ONNX's uint8 pixel input, which takes pixels unscaled.
    quant = f" scale={spec_in.scale:g} zp={spec_in.zero_point}" if spec_in.quantized else ""
    click.echo(f"input:      {spec_in.shape} {spec_in.dtype} {card.layout}{quant}")
    click.echo(f"output:     {spec_out.shape} {spec_out.dtype} ({card.output_kind})")
    click.echo(
        f"preprocess: shorter side {card.resize_shorter or 'stretch'}, centre crop "
        f"{card.input_size[0]}x{card.input_size[1]}, {card.colour}, mean {card.mean}, std {card.std}"
    )
    click.echo(f"labels:     {len(card.labels)} (+{card.label_offset} offset)")


@models.command("eval")
@click.argument("model")
@click.option(
    "--images",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Labelled folder: labels.csv (filename,class_index[,split]) or one sub-folder per class.",
)
@click.option("--runtime", default=None, help="Runtime [default: by file type; litert for zoo names].")
@click.option("--precision", default="int8", show_default=True, type=click.Choice(store.PRECISIONS))
@click.option("--threads", type=click.IntRange(min=1, max=MAX_THREADS), default=None, help="Runtime threads.")
@click.option("--against", "reference", default=None, help="Reference model (zoo name or file).")
@click.option(
    "--against-runtime", default=None, help="Reference runtime [default: onnxruntime for zoo names]."
)
@click.option(
    "--against-precision", default="float", show_default=True, type=click.Choice(store.PRECISIONS)
)
@click.option("--split", default=None, help="labels.csv rows of this split [default: eval, if split column].")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N images.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@mirror_option
def eval_model(
    model: str,
    images: Path,
    runtime: str | None,
    precision: str,
    threads: int | None,
    reference: str | None,
    against_runtime: str | None,
    against_precision: str,
    split: str | None,
    limit: int | None,
    as_json: bool,
    mirror: Path | None,
) -> None:
    """Top-1 / top-5 and speed of MODEL on a labelled folder, optionally against a reference.

    Accuracies count each image once; with --against, both models see the same images and the
    report adds top-1 agreement, mean |Δp| (L1 distance of the probability vectors, 0..2) and
    the paired 95% interval of the top-1 difference.
    """
    import contextlib
    import sys

    from edge_sdk import evaluate as ev

    if reference is None and against_runtime is not None:
        raise click.UsageError("--against-runtime goes with --against REF; add --against")
    with contextlib.ExitStack() as stack:
        clf, info = ev.open_model(
            model,
            runtime=runtime or ev.default_runtime(model),
            precision=precision,
            num_threads=threads,
            mirror=mirror,
        )
        stack.enter_context(clf)
        ref = ref_info = None
        if reference is not None:
            ref, ref_info = ev.open_model(
                reference,
                runtime=against_runtime or ev.default_runtime(reference, reference=True),
                precision=against_precision,
                num_threads=threads,
                mirror=mirror,
            )
            stack.enter_context(ref)
        folder = ev.load_labelled_folder(images, clf.card.labels, split=split, limit=limit)

        def show_progress(done: int, total: int) -> None:
            if done % 20 == 0 or done == total:
                click.echo(f"\r{done}/{total} images", nl=done == total, err=True)

        progress = show_progress if not as_json and sys.stderr.isatty() else None
        report = ev.evaluate(
            clf, folder, reference=ref, model_info=info, reference_info=ref_info, progress=progress
        )
    click.echo(json.dumps(report.to_dict(), indent=1) if as_json else report.table())


@models.command("build")
@click.argument("name")
@click.option("--precision", default="int8", show_default=True, type=click.Choice(store.PRECISIONS))
@click.option(
    "--format", "fmt", default="tflite", show_default=True, type=click.Choice(["tflite", "onnx"]),
    help="tflite: for litert; onnx: int8 ONNX for onnxruntime and opencv (float ONNX is the source itself).",
)
@mirror_option
@click.option(
    "--images",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="EDGE_SDK_CALIBRATION_IMAGES",
    help="Calibration photos for int8: a folder (with labels.csv, only its 'calibration' split "
    "is used) [env: EDGE_SDK_CALIBRATION_IMAGES].",
)
@click.option("--force", is_flag=True, help="Rebuild even if an up-to-date build is cached.")
def build(
    name: str, precision: str, fmt: str, mirror: Path | None, images: Path | None, force: bool
) -> None:
    """Build zoo model NAME into the cache (int8 TFLite by default).

    The int8 model takes BGR uint8 camera pixels (mean/std and channel order are folded into
    its first convolution) and is calibrated with the same preprocessing inference uses.
    A build whose inputs have not changed is skipped.
    """
    import contextlib
    import sys
    from collections.abc import Callable, Iterator

    from edge_sdk.build.builder import build_model

    @contextlib.contextmanager
    def progress(label: str, count: int) -> Iterator[Callable[[], None]]:
        if count == 0:
            click.echo(f"{label}...", err=True)
            yield lambda: None
            return
        with click.progressbar(length=count, label=f"{name}: {label}", file=sys.stderr) as bar:

            def tick() -> None:
                bar.update(1)

            yield tick

    result = build_model(
        name, precision=precision, fmt=fmt, mirror=mirror, images=images, force=force,
        progress=progress,
    )
    size = result.path.stat().st_size / 1e6
    click.echo(f"{result.path} ({size:.2f} MB, {result.seconds:.1f} s): {result.message}")
