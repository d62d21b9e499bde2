"""Every zoo model on every runtime that can load it gets the two reference photos right.

chelsea.png is a tabby cat (281 tabby, 282 tiger cat or 285 Egyptian cat must win), coffee.png an
espresso (967). Real models and real runtimes: the int8 TFLite models and the int8 ONNX models
are built from ../shared/models into the test cache (once per machine: the build is cached).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from edge_sdk.classifier import Classifier
from edge_sdk.preprocess import read_image

CATS = {281, 282, 285}
ESPRESSO = 967
SQUEEZENETS = ("squeezenet1.1", "squeezenet1.1-caffe", "squeezenet1.0-dc")
# (runtime, precision, model format the runtime loads)
SQUEEZENET_RUNTIMES = (
    ("litert", "int8", "tflite"),
    ("litert", "float", "tflite"),
    ("onnxruntime", "float", "onnx"),
    ("onnxruntime", "int8", "onnx"),
    ("opencv", "float", "onnx"),
    ("opencv", "int8", "onnx"),  # OpenCV DNN runs the QDQ int8 ONNX too
)
CASES = [
    pytest.param(model, runtime, precision, fmt, id=f"{model}-{runtime}-{precision}")
    for model in SQUEEZENETS
    for runtime, precision, fmt in SQUEEZENET_RUNTIMES
] + [
    pytest.param("mobilenet-v2-quant", "litert", "int8", "tflite", id="mobilenet-v2-quant-litert"),
    pytest.param("mobilenet-v1-quant", "litert", "int8", "tflite", id="mobilenet-v1-quant-litert"),
]

Build = Callable[[str, str, str], None]


@pytest.fixture(scope="module")
def build(model_home: Path, mirror: Path, imagenet: Path) -> Build:
    """Build (or find in the cache) a zoo model in the test cache."""
    from edge_sdk.build.builder import build_model

    def _build(model: str, fmt: str, precision: str) -> None:
        build_model(model, precision=precision, fmt=fmt, mirror=mirror, images=imagenet, home=model_home)

    return _build


@pytest.mark.slow  # the first run on a machine builds 9 models (cached afterwards)
@pytest.mark.parametrize(("model", "runtime", "precision", "fmt"), CASES)
def test_reference_photos(
    build: Build, model_home: Path, photos: Path, model: str, runtime: str, precision: str, fmt: str
) -> None:
    build(model, fmt, precision)
    with Classifier.from_model(
        model, runtime=runtime, precision=precision, num_threads=1, home=model_home, top_k=3
    ) as clf:
        assert clf.card.precision in (precision, "uint8")
        cat = clf.classify(read_image(photos / "chelsea.png"))
        coffee = clf.classify(read_image(photos / "coffee.png"))
    assert cat.top[0].index in CATS, cat.top
    assert coffee.top[0].index == ESPRESSO, coffee.top


@pytest.mark.slow
def test_models_info(build: Build, model_home: Path, mirror: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`models info` shows each file's tensors as the runtime sees them: the int8 TFLite's
    quantized pixel input, the int8 ONNX's plain uint8 pixel input, the float source's NCHW."""
    from click.testing import CliRunner

    from edge_sdk.cli.main import cli

    monkeypatch.setenv("EDGE_SDK_HOME", str(model_home))
    build("squeezenet1.1", "onnx", "int8")
    runner = CliRunner()

    def info(*args: str) -> dict[str, str]:
        result = runner.invoke(cli, ["models", "info", "squeezenet1.1", "--mirror", str(mirror), *args])
        assert result.exit_code == 0, result.output
        return dict(line.split(":", 1) for line in result.output.splitlines() if ":" in line)

    tflite = info()
    assert tflite["input"].split() == ["(1,", "224,", "224,", "3)", "uint8", "NHWC", "scale=1", "zp=0"]
    assert "(1, 13, 13, 1000) int8 (logit_map)" in tflite["output"]
    onnx = info("--runtime", "onnxruntime")
    assert onnx["input"].strip() == "(1, 224, 224, 3) uint8 NHWC"
    assert onnx["output"].strip() == "(1, 1000) float32 (probabilities)"
    assert "BGR, mean (0.0, 0.0, 0.0)" in onnx["preprocess"]
    source = info("--runtime", "onnxruntime", "--precision", "float")
    assert source["input"].strip() == "(1, 3, 224, 224) float32 NCHW"
    assert "RGB" in source["preprocess"]
