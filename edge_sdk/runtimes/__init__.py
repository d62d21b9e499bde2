"""Runtimes: tensor movers behind the plugin registry (`litert`, `onnxruntime`, `opencv`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_sdk import registry
from edge_sdk.errors import EdgeSDKError, ModelError
from edge_sdk.protocols import Runtime

DEFAULT_RUNTIME = "litert"

#: The most threads a runtime is given. Far above any board's cores; beyond it the runtimes'
#: own thread pools crash or hang (LiteRT and onnxruntime at 100000) instead of refusing.
MAX_THREADS = 64

#: Whether runtimes route what their native libraries print on stderr while a model loads
#: (LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on every load) into
#: Python logging. Off in library use, where file descriptor 2 is the application's; the
#: command line turns it on, so an error is the one line it is meant to be.
capture_native_logs = False


def create_runtime(name: str, model_path: str, **options: Any) -> Runtime:
    """Create the runtime `name` on `model_path` with keyword `options` (e.g. ``num_threads``).

    Raises:
        ConfigError: unknown runtime or option.
        BackendUnavailable: the runtime's package is not installed.
        ModelError: the model file cannot be loaded.
    """
    runtime: Runtime = registry.create("runtimes", name, model_path, **options)
    return runtime


def runtime_format(name: str) -> str:
    """Return the model file format ("tflite" or "onnx") the runtime `name` loads."""
    fmt: str = registry.resolve("runtimes", name).model_format
    return fmt


def file_format(path: Path) -> str | None:
    """Guess a model file's format: "tflite" from its FlatBuffer identifier, "onnx" from its name.

    ONNX files are plain protobuf with no identifier, so only the suffix tells them apart.
    None when neither applies or the file cannot be read.
    """
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError:
        return None
    if head[4:8] == b"TFL3":
        return "tflite"
    return "onnx" if path.suffix.lower() == ".onnx" else None


def load_failure(runtime: str, model_format: str, path: Path, reason: str) -> ModelError:
    """The error for a model file the runtime `runtime` could not load.

    A file of the other format (an .onnx given to the default LiteRT runtime is the usual
    slip) gets the runtimes that do load it; any other file is called corrupt.
    """
    found = file_format(path)
    if found is not None and found != model_format:
        able = []
        for name in registry.BUILTINS["runtimes"]:
            try:
                if runtime_format(name) == found:
                    able.append(name)
            except EdgeSDKError:  # a runtime whose package is missing still names itself
                continue
        choices = " or ".join(f"--runtime {name}" for name in able) or "a runtime that loads it"
        return ModelError(
            f"{path} is {_a_format(found)} model, which the {runtime} runtime cannot run; use {choices}"
        )
    return ModelError(
        f"{runtime} cannot load {path} ({reason}); the file is corrupt or not {_a_format(model_format)} "
        "model: rebuild it with 'edge-classify models build' or copy it again"
    )


def _a_format(fmt: str) -> str:
    return "a TFLite" if fmt == "tflite" else "an ONNX"
