"""The int8 ONNX models stay exact on an x86 CPU without VNNI, run on one for real.

On x86 without VNNI, onnxruntime multiplies uint8 activations by int8 weights with VPMADDUBSW,
which adds two products into a saturating int16: full 8-bit weights can overflow it, 7-bit
weights cannot. This machine's CPU has VNNI, so the CPU without it is emulated: user-mode
`qemu-x86_64 -cpu Haswell` (AVX2, no VNNI) runs this venv's own Python and onnxruntime, whose
MLAS picks its AVX2 kernels from the CPUID qemu reports. Nothing is faked: it is the same code
on a real CPU model's instruction set, interpreted. The emulated run and the native run of the
same files on the same crops are compared:

- squeezenet1.0-dc (8-bit int8 weights) through edge-sdk's `onnxruntime` runtime, which sees
  the emulated CPU lacks VNNI and sets `PRECISE_X64_SESSION_CONFIG`: the same answers as on
  this CPU;
- the same file on a plain onnxruntime session: visibly different (the saturation the session
  config avoids, so this test can tell);
- squeezenet1.1 (7-bit weights, as its card says) through the runtime, which leaves that
  session plain: the same answers.
"""

from __future__ import annotations

import csv
import json
import platform
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.classifier import Classifier
from edge_sdk.preprocess import read_image
from edge_sdk.runtimes.onnxruntime import PRECISE_X64_SESSION_CONFIG, x86_without_vnni

QEMU = shutil.which("qemu-x86_64")


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(platform.machine() != "x86_64", reason="emulates an x86 CPU on an x86 host"),
    pytest.mark.skipif(QEMU is None, reason="needs qemu-x86_64 (apt package qemu-user; scripts/setup.sh)"),
]

# Runs under the emulator: each model on the given sessions, outputs saved for the parent.
CHILD = textwrap.dedent(
    """
    import json
    import sys
    import numpy as np
    import onnxruntime as ort
    from edge_sdk.runtimes.onnxruntime import OnnxRuntime

    crops, out = np.load(sys.argv[1]), sys.argv[2]
    results = {}
    for arg in sys.argv[3:]:
        kind, path = arg.split("=", 1)
        if kind == "edge":
            runtime = OnnxRuntime(path, num_threads=1)
            run = runtime.run
            results["config " + arg] = np.array(json.dumps(runtime.session_config))
        else:
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            run = lambda x, s=session: s.run(None, {s.get_inputs()[0].name: x})[0]
        results[arg] = np.concatenate([run(c[None]) for c in crops])
    np.savez(out, **results)
    """
)


def _crops(clf: Classifier, imagenet: Path, photos: Path) -> np.ndarray:
    """The runtime's input for the two reference photos and the first 6 eval images."""
    with (imagenet / "labels.csv").open() as f:
        names = sorted(row["filename"] for row in csv.DictReader(f) if row["split"] == "eval")[:6]
    paths = [photos / "chelsea.png", photos / "coffee.png"] + [imagenet / n for n in names]
    return np.stack([clf.preprocess(read_image(p))[0] for p in paths])


def test_int8_onnx_on_a_cpu_without_vnni(
    model_home: Path, mirror: Path, imagenet: Path, photos: Path, tmp_path: Path
) -> None:
    from edge_sdk.build.builder import build_model

    paths = {}
    for name in ("squeezenet1.0-dc", "squeezenet1.1"):
        paths[name] = build_model(
            name, precision="int8", fmt="onnx", mirror=mirror, images=imagenet, home=model_home
        ).path
    dc, v11 = str(paths["squeezenet1.0-dc"]), str(paths["squeezenet1.1"])
    runs = [f"edge={dc}", f"plain={dc}", f"edge={v11}"]
    inputs = {}
    for name, path in paths.items():
        with Classifier.from_model(path, runtime="onnxruntime", num_threads=1) as clf:
            inputs[name] = _crops(clf, imagenet, photos)
    # Both models take 0..255 BGR pixels, but not the same crop size: one file each.
    (tmp_path / "child.py").write_text(CHILD)
    results: dict[tuple[str, str], np.ndarray] = {}
    for name, args in (("squeezenet1.0-dc", runs[:2]), ("squeezenet1.1", runs[2:])):
        np.save(tmp_path / f"{name}.npy", inputs[name])
        for where, prefix in (("native", []), ("haswell", [str(QEMU), "-cpu", "Haswell"])):
            out = tmp_path / f"{name}-{where}.npz"
            proc = subprocess.run(
                [
                    *prefix,
                    sys.executable,
                    str(tmp_path / "child.py"),
                    str(tmp_path / f"{name}.npy"),
                    str(out),
                    *args,
                ],
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert proc.returncode == 0, proc.stderr[-2000:]
            with np.load(out) as saved:
                results.update({(where, key): saved[key] for key in saved.files})

    def l1(arg: str, reference: str) -> np.ndarray:
        """Per image, the L1 distance of the emulated run of `arg` from the native `reference`."""
        diff: np.ndarray = np.abs(results[("haswell", arg)] - results[("native", reference)]).sum(axis=1)
        return diff

    def same_top1(arg: str) -> bool:
        return bool((results[("native", arg)].argmax(1) == results[("haswell", arg)].argmax(1)).all())

    def config(where: str, arg: str) -> dict[str, str]:
        loaded: dict[str, str] = json.loads(str(results[(where, "config " + arg)]))
        return loaded

    # The runtime asks for U8U8 on the CPU without VNNI, and only for 8-bit weights (dc's card).
    assert config("haswell", runs[0]) == PRECISE_X64_SESSION_CONFIG
    assert config("haswell", runs[2]) == {}
    if not x86_without_vnni():  # this CPU: U8S8 is exact here, the entry would only slow it down
        assert config("native", runs[0]) == {}
    # edge-sdk's runtime: the 8-bit model answers as on this CPU (float kernels differ a little).
    assert l1(runs[0], runs[0]).max() < 0.02 and same_top1(runs[0]), l1(runs[0], runs[0])
    # A plain session on the emulated CPU saturates: several images move far.
    assert l1(runs[1], runs[0]).max() > 0.2, l1(runs[1], runs[0])
    # 7-bit weights are safe on a plain session.
    assert l1(runs[2], runs[2]).max() < 0.02 and same_top1(runs[2]), l1(runs[2], runs[2])
