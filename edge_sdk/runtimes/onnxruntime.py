"""onnxruntime runtime for float ONNX models and int8 ONNX models from its quantizer."""

from __future__ import annotations

import functools
import importlib
import platform
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_sdk.checks import check_int
from edge_sdk.errors import BackendUnavailable, ModelError
from edge_sdk.models.card import ModelCard
from edge_sdk.models.store import card_path
from edge_sdk.protocols import Closing
from edge_sdk.runtimes import MAX_THREADS, load_failure
from edge_sdk.types import TensorSpec

try:
    import onnxruntime as ort
except ImportError:  # pragma: no cover - optional extra
    raise BackendUnavailable(
        "the onnxruntime runtime needs onnxruntime: pip install 'edge-sdk[onnx]'"
    ) from None

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
}


#: Session configuration for int8 weights that may have 8 bits on an x86 CPU without VNNI
#: (`needs_precise_x64`). There onnxruntime's U8S8 kernels add two uint8 x int8 products into a
#: saturating int16 (VPMADDUBSW), which full 8-bit int8 weights can overflow (squeezenet1.0-dc's
#: int8 ONNX: mean L1 0.35 from the exact output under an emulated Haswell). With this entry
#: onnxruntime converts constant int8 weights to uint8 when it loads the model and runs its U8U8
#: kernels instead, which are exact (tests/test_no_vnni.py). Not set elsewhere: onnxruntime
#: applies the entry on every x86 CPU whose U8U8 and U8S8 kernels differ, VNNI ones included,
#: where U8S8 is exact anyway and the entry made squeezenet1.0-dc 1.9x slower; on ARM64 it
#: does nothing. 7-bit weights (the quantizer's reduce_range) never overflow, so the
#: squeezenet1.1 int8 ONNX files keep U8S8's speed on every CPU; a user's own model quantized
#: with onnxruntime's defaults has 8-bit weights and gets the entry as squeezenet1.0-dc does.
PRECISE_X64_SESSION_CONFIG = {"session.x64quantprecision": "1"}

_X86 = ("x86_64", "amd64", "i386", "i686", "x86")


@functools.cache
def x86_without_vnni() -> bool:
    """Whether this CPU is x86 without VNNI, where 8-bit int8 weights can saturate U8S8.

    Read from numpy's table of the features CPUID reports, which also tells the truth under an
    emulator (where /proc/cpuinfo shows the host's). Where the table is missing, an x86 CPU
    counts as lacking VNNI: that can cost speed, never exactness.
    """
    if platform.machine().lower() not in _X86:
        return False
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):  # numpy 2, 1
        try:
            features = importlib.import_module(module).__cpu_features__
        except (ImportError, AttributeError):
            continue
        return not (features.get("AVX512VNNI") or features.get("AVX_VNNI"))
    return True


def _weights_within_7_bits(model_path: Path) -> bool:
    """Whether the card beside `model_path` says its int8 weights have 7 bits (`reduce_range`).

    Only the int8 ONNX builder writes that (`edge_sdk.build.onnx_int8`); a file without such a
    card, or one whose card cannot be read, is taken to have 8-bit weights.
    """
    try:
        settings = ModelCard.load(card_path(model_path)).notes.get("settings")
    except ModelError:
        return False
    if not isinstance(settings, dict):
        return False
    return settings.get("weights") == "int8" and settings.get("reduce_range") is True


def needs_precise_x64(model_path: Path) -> bool:
    """Whether `model_path` gets `PRECISE_X64_SESSION_CONFIG` on this CPU."""
    return x86_without_vnni() and not _weights_within_7_bits(model_path)


def _spec(arg: Any, image: bool) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else 1 for d in arg.shape)
    if image and len(shape) == 4:
        layout = "NCHW" if shape[1] == 3 else "NHWC"
    else:
        layout = "NC" if len(shape) == 2 else ""
    return TensorSpec(shape=shape, dtype=_ORT_TYPES.get(arg.type, arg.type), layout=layout)  # type: ignore[arg-type]


class OnnxRuntime(Closing):
    """Runs an .onnx model with onnxruntime's CPU execution provider.

    Args:
        model_path: The .onnx file.
        num_threads: Intra-op threads; None lets onnxruntime choose.
    """

    model_format = "onnx"

    def __init__(self, model_path: str | Path, *, num_threads: int | None = None) -> None:
        if num_threads is not None:
            num_threads = check_int("num_threads", num_threads, low=1, high=MAX_THREADS)
        path = Path(model_path)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        #: The session configuration entries set (`PRECISE_X64_SESSION_CONFIG` or none).
        self.session_config = dict(PRECISE_X64_SESSION_CONFIG) if needs_precise_x64(path) else {}
        for key, value in self.session_config.items():
            options.add_session_config_entry(key, value)
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise load_failure("onnxruntime", "onnx", path, reason) from None
        inputs = self._session.get_inputs()
        outputs = self._session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise ModelError(
                f"{path} has {len(inputs)} inputs and {len(outputs)} outputs; edge-sdk needs an "
                "image classifier with one input"
            )
        self._input_name = inputs[0].name
        self._output_name = outputs[0].name
        self.input_spec = _spec(inputs[0], image=True)
        self.output_spec = _spec(outputs[0], image=False)
        self.num_threads = num_threads

    def run(self, tensor: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Run the model on one input tensor and return its first output."""
        out = self._session.run([self._output_name], {self._input_name: tensor})[0]
        return np.asarray(out)

    def close(self) -> None:
        self._session = None  # type: ignore[assignment]
