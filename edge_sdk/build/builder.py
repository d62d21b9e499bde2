"""`build_model`: build a zoo model into the cache once, and skip the build when nothing changed.

A build is identified by its *build key*: the source's sha256, a digest of the calibration
files (names and contents, in order), a digest of the preprocessing code, this builder's
version, the converter's version and the precision and format. The key goes into the card's
``notes``; a later build with the same key and an intact model file is skipped, so CI and the
test suite build each model once per machine.

Builds are serialized by a lock file in the cache, and files are replaced atomically, so
concurrent test runs on one machine never see a half-written model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.util
import io
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_sdk import preprocess, registry
from edge_sdk.build.calibration import calibration_images, calibration_pixels, file_list_digest
from edge_sdk.errors import BackendUnavailable, ModelError, file_problem
from edge_sdk.models import store
from edge_sdk.models.card import ModelCard
from edge_sdk.models.zoo import ZooEntry

#: Bump when a change here changes the bytes built from the same inputs.
BUILDER_VERSION = "11"

#: Called as ``progress(label, count)`` before each long step (``count`` 0: unknown length);
#: enters a context whose value is the tick the step calls once per item.
ProgressFactory = Callable[[str, int], contextlib.AbstractContextManager[Callable[[], None]]]


@dataclass(frozen=True)
class BuildResult:
    """What `build_model` did.

    Attributes:
        path: The model file (in the cache, or the mirror's for prebuilt and float ONNX).
        card: Its card.
        built: False when nothing was built (up to date, prebuilt, or the source itself).
        seconds: Wall time of the call.
        message: What happened, for people (the CLI prints it after the path).
    """

    path: Path
    card: ModelCard
    built: bool
    seconds: float
    message: str


def _require(*modules: str) -> None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise BackendUnavailable(
                f"building models needs the Python package {module}: pip install 'edge-sdk[build]'"
            )


def build_key(
    entry: ZooEntry, fmt: str, precision: str, calibration_digest: str, converter: str
) -> str:
    """Return the key that identifies a build's inputs (see the module docstring).

    The preprocessing code is part of it: calibration must see what inference sees.
    """
    preprocessing = hashlib.sha256(Path(preprocess.__file__).read_bytes()).hexdigest()
    parts = (
        entry.sha256, calibration_digest, preprocessing, BUILDER_VERSION, converter, fmt, precision
    )
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _up_to_date(path: Path, key: str) -> ModelCard | None:
    """Return the card of an intact build with `key` at `path`, else None."""
    if not path.is_file():
        return None
    try:
        card = ModelCard.load(store.card_path(path))
    except ModelError:
        return None
    notes = card.notes
    if notes.get("build_key") != key or notes.get("model_sha256") != store.sha256_of(path):
        return None
    return card


@contextlib.contextmanager
def _lock(folder: Path) -> Iterator[None]:
    """Hold the cache folder's build lock; while held, clear what interrupted builds left.

    Raises:
        ModelError: the folder cannot be made or written (read-only, a file in its way).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = (folder / ".build.lock").open("w")
    except OSError as exc:
        raise ModelError(
            f"cannot write to the model cache {folder}: {file_problem(exc)}; set EDGE_SDK_HOME to a "
            "writable folder"
        ) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _sweep(folder)
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _sweep(folder: Path) -> None:
    """Remove temporary files and folders of builds that were killed (SIGKILL, power loss, a
    SIGTERM in the ONNX quantizer): only a build holding the lock writes them, and we hold it."""
    for leftover in [*folder.glob(".tmp*"), *folder.glob(".quant-*")]:
        with contextlib.suppress(OSError):
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()


def _tmp_path(path: Path) -> Path:
    # Same folder (so os.replace is atomic), same suffix (tools may look at it), hidden.
    return path.with_name(f".tmp{os.getpid()}-{path.name}")


def _write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file, so no reader sees half of it.

    Raises:
        ModelError: it cannot be written (a full disk, say); the temporary file is removed.
    """
    tmp = _tmp_path(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise ModelError(f"cannot write {path}: {file_problem(exc)}; free space on its disk or "
                             "set EDGE_SDK_HOME to another folder") from None
        raise


def _save_card(card: ModelCard, model_path: Path) -> None:
    _write_atomic(store.card_path(model_path), card.to_json().encode())


def _unbuffered_text(fd: int) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), write_through=True, line_buffering=True)


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Keep TensorFlow's native start-up and converter chatter off the terminal.

    TensorFlow writes from C++ straight to file descriptors 1 and 2, so they are pointed at a
    scratch file; Python's own sys.stdout / sys.stderr (progress bars, errors) keep going to
    the real terminal through duplicates of the original descriptors.
    """
    import sys
    import tempfile
    import warnings

    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    py_streams = (sys.stdout, sys.stderr)
    with tempfile.TemporaryFile() as scratch, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        try:
            os.dup2(scratch.fileno(), 1)
            os.dup2(scratch.fileno(), 2)
            sys.stdout = _unbuffered_text(saved[0])
            sys.stderr = _unbuffered_text(saved[1])
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = py_streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


@contextlib.contextmanager
def no_progress(_label: str, _count: int) -> Iterator[Callable[[], None]]:
    """A `ProgressFactory` that shows nothing."""
    yield lambda: None


def build_model(
    name: str,
    *,
    precision: str = "int8",
    fmt: str = "tflite",
    mirror: str | os.PathLike[str] | None = None,
    images: str | os.PathLike[str] | None = None,
    home: str | os.PathLike[str] | None = None,
    force: bool = False,
    progress: ProgressFactory | None = None,
) -> BuildResult:
    """Build zoo model `name` into the cache (``store.built_path``) with its card beside it.

    Args:
        name: Zoo name.
        precision: "int8" or "float".
        fmt: "tflite" or "onnx" (the ONNX int8 build is onnxruntime's quantizer).
        mirror: Source mirror folder (default: ``$EDGE_SDK_MODEL_MIRROR``).
        images: Folder of calibration images (see `calibration_images`); needed for int8,
            default ``$EDGE_SDK_CALIBRATION_IMAGES``.
        home: Cache folder (default: ``$EDGE_SDK_HOME``).
        force: Rebuild even when the build key matches.
        progress: Shows progress over the calibration images (see `ProgressFactory`).

    Raises:
        ValueError: bad precision or format.
        ModelError: unknown name, missing or corrupt source, mirror or calibration images.
        BackendUnavailable: TensorFlow / onnx not installed.
    """
    start = time.monotonic()
    if precision not in store.PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(store.PRECISIONS)}, got {precision!r}")
    if fmt not in ("tflite", "onnx"):
        raise ValueError(f"fmt must be 'tflite' or 'onnx', got {fmt!r}")
    entry = store.zoo_entry(name)
    source = store.source_path(entry, mirror)
    if entry.prebuilt:
        if fmt != "tflite":
            raise ModelError(f"{name} exists only as TFLite; build it with --format tflite")
        card = store.source_card(entry, mirror)
        return BuildResult(
            source, card, False, time.monotonic() - start,
            "prebuilt: checksum verified, nothing to build",
        )
    if fmt == "onnx" and precision == "float":
        card = store.source_card(entry, mirror)
        return BuildResult(
            source, card, False, time.monotonic() - start,
            "the float ONNX is the source file itself: checksum verified, nothing to build",
        )

    _require("onnx", "tensorflow") if fmt == "tflite" else _require("onnx", "onnxruntime")
    calibration: list[Path] = []
    digest = "none"
    if precision == "int8":
        folder = images if images is not None else os.environ.get("EDGE_SDK_CALIBRATION_IMAGES")
        if folder is None:
            raise ModelError(
                "an int8 build needs calibration photos: pass --images DIR (e.g. the "
                "imagenet-sample folder) or set EDGE_SDK_CALIBRATION_IMAGES"
            )
        calibration = calibration_images(Path(folder))
        digest = file_list_digest(calibration)
    converter = _converter_version(fmt)
    key = build_key(entry, fmt, precision, digest, converter)
    out_path = store.built_path(name, fmt, precision, home)  # type: ignore[arg-type]
    progress = progress or no_progress

    with _lock(out_path.parent):
        cached = None if force else _up_to_date(out_path, key)
        if cached is not None:
            return BuildResult(
                out_path, cached, False, time.monotonic() - start,
                "up to date: same source, calibration images and builder (--force rebuilds)",
            )
        notes: dict[str, Any] = {
            "build_key": key,
            "builder_version": BUILDER_VERSION,
            "converter": converter,
            "calibration_images": len(calibration),
            "calibration_digest": digest,
        }
        if fmt == "tflite":
            card = _build_tflite(entry, source, out_path, precision, calibration, progress, mirror)
        else:
            card = _build_onnx(entry, source, out_path, calibration, progress)
        card = dataclasses.replace(
            card, notes={**card.notes, **notes, "model_sha256": store.sha256_of(out_path)}
        )
        _save_card(card, out_path)
    how = f"calibrated on {len(calibration)} images" if calibration else "no calibration"
    return BuildResult(
        out_path, card, True, time.monotonic() - start, f"built {precision} {fmt}, {how}"
    )


def _converter_version(fmt: str) -> str:
    from importlib import metadata

    packages = ("tensorflow-cpu", "tensorflow") if fmt == "tflite" else ("onnxruntime",)
    for package in packages:
        with contextlib.suppress(metadata.PackageNotFoundError):
            return f"{package} {metadata.version(package)}"
    return "unknown"


def _build_tflite(
    entry: ZooEntry,
    source: Path,
    out_path: Path,
    precision: str,
    calibration: list[Path],
    progress: ProgressFactory,
    mirror: str | os.PathLike[str] | None,
) -> ModelCard:
    pixels = list(calibration_pixels(calibration, entry.input_size, entry.resize_shorter))
    with quiet_native_logs():
        try:
            from edge_sdk.build import tflite
        except ImportError as exc:
            raise registry.missing_package(exc, "building models") from None
        if precision == "float":
            with progress(f"building {entry.name} (float)", 0):
                data = tflite.build_tflite_bytes(entry, source, "float")
        else:
            model = tflite.folded_model(entry, source, uint8_input=False)
            with progress("equalizing activation channels", 0):
                tflite.equalize(model, pixels)
            with progress("rounding weights", tflite.count_convolutions(model)) as tick:
                tflite.round_weights(model, pixels, tick)
            with progress("calibrating", len(pixels)) as tick:
                data = tflite.convert(model, "int8", pixels, tick)
    _write_atomic(out_path, data)
    return store.source_card(entry, mirror).folded(
        output_kind="logit_map" if precision == "int8" else "logits", precision=precision
    )


def _build_onnx(
    entry: ZooEntry,
    source: Path,
    out_path: Path,
    calibration: list[Path],
    progress: ProgressFactory,
) -> ModelCard:
    try:
        from edge_sdk.build.onnx_int8 import build_onnx_int8
    except ImportError as exc:
        raise registry.missing_package(exc, "building int8 ONNX models") from None

    tmp = _tmp_path(out_path)
    card = build_onnx_int8(entry, source.parent, tmp, calibration, progress=progress)
    os.replace(tmp, out_path)
    with contextlib.suppress(FileNotFoundError):
        store.card_path(tmp).unlink()  # in case the ONNX builder wrote a card beside its file
    return card
