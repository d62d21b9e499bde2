"""Runtimes: tensor movers behind the plugin registry (`litert`, `onnxruntime`, `opencv`)."""

from __future__ import annotations

from typing import Any

from edge_sdk import registry
from edge_sdk.protocols import Runtime

DEFAULT_RUNTIME = "litert"


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
