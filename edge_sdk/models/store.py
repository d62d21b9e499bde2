"""Where model files live: the source mirror, the build cache, and resolving a model reference.

Sources (the reference ONNX files, the pre-quantized MobileNets, label lists) are read from a
*mirror* folder, because the boards this runs on may have no internet: copy the files there from
each entry's `url`. Built models and their cards go to the cache, ``$EDGE_SDK_HOME/models``
(default ``~/.cache/edge-sdk/models``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Literal

from edge_sdk.errors import ModelError, file_problem
from edge_sdk.models.card import ModelCard
from edge_sdk.models.zoo import ZOO, ZooEntry

ModelFormat = Literal["tflite", "onnx"]

#: What `edge-classify models build` makes of a zoo model.
PRECISIONS = ("int8", "float")


def home_dir(home: str | os.PathLike[str] | None = None) -> Path:
    """Return edge-sdk's cache folder: `home`, else ``$EDGE_SDK_HOME``, else ~/.cache/edge-sdk."""
    if home is not None:
        return Path(home)
    env = os.environ.get("EDGE_SDK_HOME")
    return Path(env) if env else Path.home() / ".cache" / "edge-sdk"


def mirror_dir(mirror: str | os.PathLike[str] | None = None) -> Path:
    """Return the source mirror folder: `mirror`, else ``$EDGE_SDK_MODEL_MIRROR``, else <home>/mirror.

    Raises:
        ModelError: the folder does not exist.
    """
    if mirror is not None:
        path = Path(mirror)
    elif os.environ.get("EDGE_SDK_MODEL_MIRROR"):
        path = Path(os.environ["EDGE_SDK_MODEL_MIRROR"])
    else:
        path = home_dir() / "mirror"
    if not path.is_dir():
        raise ModelError(
            f"model mirror folder {path} does not exist; pass --mirror DIR or set "
            "EDGE_SDK_MODEL_MIRROR to a folder holding the source files ('edge-classify models list' "
            "shows where to download each)"
        )
    return path


def sha256_of(path: Path) -> str:
    """Return the hex SHA-256 of a file.

    Raises:
        ModelError: the file cannot be read (permissions, a folder, an I/O error).
    """
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {file_problem(exc)}") from None
    return digest.hexdigest()


def zoo_entry(name: str) -> ZooEntry:
    """Return the zoo entry `name`; ModelError listing the names if there is none."""
    try:
        return ZOO[name]
    except KeyError:
        raise ModelError(
            f"unknown model {name!r}; choose one of: {', '.join(ZOO)} (or give a model file path)"
        ) from None


def source_path(entry: ZooEntry, mirror: str | os.PathLike[str] | None = None) -> Path:
    """Return the verified source file of `entry` in the mirror.

    Raises:
        ModelError: the file is missing or its checksum is wrong.
    """
    path = mirror_dir(mirror) / entry.source
    if not path.is_file():
        raise ModelError(
            f"{entry.source} is not in the model mirror {path.parent}; download it from "
            f"{entry.url} into that folder"
        )
    actual = sha256_of(path)
    if actual != entry.sha256:
        raise ModelError(
            f"{path} has sha256 {actual[:12]}..., expected {entry.sha256[:12]}...: the file is "
            f"corrupt or another version; download it again from {entry.url}"
        )
    return path


def read_labels(entry: ZooEntry, mirror: str | os.PathLike[str] | None = None) -> tuple[str, ...]:
    """Read `entry`'s class names from the mirror, without the leading offset classes."""
    path = mirror_dir(mirror) / entry.labels_file
    try:
        # utf-8-sig: a byte-order mark would otherwise stick to the first label.
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    except UnicodeDecodeError:
        raise ModelError(f"label file {path} is not UTF-8 text; copy it from the model's source "
                         "again") from None
    except OSError:
        raise ModelError(
            f"label file {entry.labels_file} is not in the model mirror {path.parent}; copy it there"
        ) from None
    labels = tuple(lines[entry.label_offset :])
    if len(labels) != 1000:
        raise ModelError(f"{path} holds {len(lines)} labels; expected {1000 + entry.label_offset}: "
                         "copy it from the model's source again")
    return labels


def source_card(entry: ZooEntry, mirror: str | os.PathLike[str] | None = None) -> ModelCard:
    """Return the card of `entry`'s source model as it is in the mirror (not folded)."""
    return ModelCard(
        name=entry.name,
        labels=read_labels(entry, mirror),
        label_offset=entry.label_offset,
        input_size=entry.input_size,
        resize_shorter=entry.resize_shorter,
        colour=entry.colour,
        mean=entry.mean,
        std=entry.std,
        layout="NHWC" if entry.prebuilt else "NCHW",
        output_kind="probabilities",
        precision="uint8" if entry.prebuilt else "float",
        source_sha256=entry.sha256,
    )


def built_path(
    name: str, fmt: ModelFormat, precision: str, home: str | os.PathLike[str] | None = None
) -> Path:
    """Return where the built model `name` of `fmt` and `precision` lives in the cache.

    TFLite models (what boards run) sit in ``models/``; other formats in a sub-folder named by
    the format, because a card is named by the model's stem (``name.int8.json``) and the int8
    TFLite and int8 ONNX of one model would otherwise share, and overwrite, one card.
    """
    folder = home_dir(home) / "models"
    if fmt != "tflite":
        folder = folder / fmt
    return folder / f"{name}.{precision}.{fmt}"


def card_path(model_path: Path) -> Path:
    """Return the sidecar card path of a model file."""
    return model_path.with_suffix(".json")


def _checked(path: Path, card: ModelCard, fix: str) -> ModelCard:
    """Refuse a model file whose checksum differs from the one its card records (if any).

    Loaders catch a broken file structure but not damaged weights, which load and then
    predict garbage; the checksum catches both.
    """
    expected = card.notes.get("model_sha256")
    if expected and sha256_of(path) != expected:
        raise ModelError(
            f"{path} does not match the checksum its card records: the file is damaged or was "
            f"replaced; {fix}"
        )
    return card


def resolve(
    model: str | os.PathLike[str],
    fmt: ModelFormat,
    precision: str = "int8",
    *,
    mirror: str | os.PathLike[str] | None = None,
    home: str | os.PathLike[str] | None = None,
) -> tuple[Path, ModelCard]:
    """Find the model file and card for a zoo name or a path.

    A zoo name gives the built model of that `fmt` and `precision` from the cache; the float ONNX
    is the mirror's source itself, and the pre-quantized MobileNets are used from the mirror as is.
    A path gives that file and its sidecar card (``model.json`` beside ``model.tflite``); a path
    with no card whose checksum matches a zoo source gets that entry's card.

    Raises:
        ModelError: unknown name, wrong format for the model, not built yet, missing card.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    text = os.fspath(model)
    if text in ZOO:
        entry = ZOO[text]
        if entry.prebuilt:
            if fmt != "tflite":
                raise ModelError(
                    f"{entry.name} exists only as TFLite; use it with --runtime litert"
                )
            return source_path(entry, mirror), source_card(entry, mirror)
        if fmt == "onnx" and precision == "float":
            return source_path(entry, mirror), source_card(entry, mirror)
        path = built_path(entry.name, fmt, precision, home)
        flag = "" if precision == "int8" else f" --precision {precision}"
        fmt_flag = "" if fmt == "tflite" else f" --format {fmt}"
        if not path.is_file():
            raise ModelError(
                f"{entry.name} ({precision} {fmt}) is not built yet; run: "
                f"edge-classify models build {entry.name}{flag}{fmt_flag}"
            )
        fix = f"rebuild it: edge-classify models build {entry.name}{flag}{fmt_flag} --force"
        return path, _checked(path, ModelCard.load(card_path(path)), fix)
    path = Path(text)
    if not path.is_file():
        raise ModelError(
            f"no model named {text!r} and no such file; choose one of: {', '.join(ZOO)}, "
            "or give the path of a .tflite or .onnx file"
        )
    sidecar = card_path(path)
    if sidecar.is_file():
        return path, _checked(path, ModelCard.load(sidecar), "copy it again or rebuild it")
    digest = sha256_of(path)
    for entry in ZOO.values():
        if entry.sha256 == digest:
            card = source_card(entry, mirror)
            return path, dataclasses.replace(card, name=path.stem)
    raise ModelError(
        f"{path} has no model card; write {sidecar.name} next to it "
        "(run 'edge-classify models info squeezenet1.1 --card' for an example)"
    )
