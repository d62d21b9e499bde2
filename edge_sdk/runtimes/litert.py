"""LiteRT (ai-edge-litert) runtime, falling back to the older tflite_runtime package."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_sdk import runtimes
from edge_sdk.checks import check_int
from edge_sdk.errors import BackendUnavailable, ModelError
from edge_sdk.protocols import Closing
from edge_sdk.runtimes import MAX_THREADS, load_failure
from edge_sdk.types import TensorSpec

try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:  # pragma: no cover - depends on what the board has installed
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
    except ImportError:
        raise BackendUnavailable(
            "the litert runtime needs ai-edge-litert (or tflite_runtime): pip install ai-edge-litert"
        ) from None


log = logging.getLogger(__name__)

# One capture at a time: two would restore each other's file descriptors out of order.
_capture_lock = threading.Lock()


@contextlib.contextmanager
def _native_stderr_to_log() -> Iterator[None]:
    """While a model loads, send what LiteRT's C++ code prints on stderr to this module's log.

    Its INFO lines go to DEBUG, anything else to WARNING. Only when
    `edge_sdk.runtimes.capture_native_logs` is set: it redirects the process's file
    descriptor 2 for those milliseconds, which a library must not do behind its host's back.
    """
    if not runtimes.capture_native_logs:
        yield
        return
    with _capture_lock, tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to keep clean
            yield
            return
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines():
                if line.strip():
                    level = logging.DEBUG if line.startswith("INFO: ") else logging.WARNING
                    log.log(level, "LiteRT: %s", line)


def _spec(detail: dict[str, Any], image: bool) -> TensorSpec:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    shape = tuple(int(d) for d in detail["shape"])
    layout = "NHWC" if image and len(shape) == 4 else ("NC" if len(shape) == 2 else "")
    return TensorSpec(
        shape=shape,
        dtype=np.dtype(detail["dtype"]).name,
        layout=layout,  # type: ignore[arg-type]
        scale=float(scale),
        zero_point=int(zero_point),
    )


class LiteRTRuntime(Closing):
    """Runs a .tflite model with the LiteRT interpreter (XNNPACK on CPU).

    Args:
        model_path: The .tflite file.
        num_threads: Interpreter threads; None lets LiteRT choose.
    """

    model_format = "tflite"

    def __init__(self, model_path: str | Path, *, num_threads: int | None = None) -> None:
        if num_threads is not None:
            num_threads = check_int("num_threads", num_threads, low=1, high=MAX_THREADS)
        path = Path(model_path)
        try:
            with _native_stderr_to_log():
                self._interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise load_failure("LiteRT", "tflite", path, reason) from None
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or not outputs:
            raise ModelError(
                f"{path} has {len(inputs)} inputs and {len(outputs)} outputs; edge-sdk needs an "
                "image classifier with one input"
            )
        self._input_index = inputs[0]["index"]
        self._output_index = outputs[0]["index"]
        self.input_spec = _spec(inputs[0], image=True)
        self.output_spec = _spec(outputs[0], image=False)
        self.num_threads = num_threads

    def run(self, tensor: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Run the model on one input tensor and return a copy of the first output."""
        self._interpreter.set_tensor(self._input_index, tensor)
        self._interpreter.invoke()
        out: npt.NDArray[Any] = self._interpreter.get_tensor(self._output_index)
        return out

    def close(self) -> None:
        self._interpreter = None  # type: ignore[assignment]
