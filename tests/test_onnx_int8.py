"""The int8 ONNX builder (onnxruntime's quantizer) on the real float source, a few calibration images."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_sdk.build.calibration import calibration_images
from edge_sdk.build.onnx_int8 import OnnxQuantSettings, build_onnx_int8
from edge_sdk.classifier import Classifier
from edge_sdk.models import ZOO, store
from edge_sdk.models.card import ModelCard
from edge_sdk.preprocess import read_image


def test_build_is_deterministic_and_carded(
    tmp_path: Path, mirror: Path, imagenet: Path, photos: Path
) -> None:
    images = calibration_images(imagenet)[:4]  # enough to check the mechanics quickly
    first, second = tmp_path / "a" / "m.int8.onnx", tmp_path / "b" / "m.int8.onnx"
    card = build_onnx_int8(ZOO["squeezenet1.1"], mirror, first, images)
    build_onnx_int8(ZOO["squeezenet1.1"], mirror, second, images)
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in first.parent.iterdir()) == ["m.int8.json", "m.int8.onnx"]
    assert ModelCard.load(store.card_path(first)) == card
    source = store.source_card(ZOO["squeezenet1.1"], mirror)
    assert card.precision == "int8" and card.notes["settings"] == OnnxQuantSettings().describe()
    assert (card.mean, card.std, card.colour, card.input_size) == (
        source.mean,
        source.std,
        source.colour,
        source.input_size,
    )
    assert card.notes["model_sha256"] == store.sha256_of(first)
    assert first.stat().st_size < 1_400_000
    with Classifier.from_model(first, runtime="onnxruntime") as clf:
        assert clf.classify(read_image(photos / "coffee.png")).top[0].index == 967


def test_bad_arguments(tmp_path: Path, mirror: Path, imagenet: Path) -> None:
    with pytest.raises(ValueError, match="pre-quantized TFLite"):
        build_onnx_int8(ZOO["mobilenet-v2-quant"], mirror, tmp_path / "x.onnx", [imagenet / "x.jpg"])
    with pytest.raises(ValueError, match="no calibration images"):
        build_onnx_int8(ZOO["squeezenet1.1"], mirror, tmp_path / "x.onnx", [])
    with pytest.raises(ValueError, match="float_tail must be one of none, softmax, pool, conv10"):
        OnnxQuantSettings(float_tail="everything")
    assert not (tmp_path / "x.onnx").exists()
