"""The Classifier on the reference float models and the pre-quantized MobileNets (real runtimes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_sdk.classifier import Classifier
from edge_sdk.errors import ConfigError, ModelError, SourceError
from edge_sdk.preprocess import read_image, resize_crop

CATS = {281, 282, 285}
ESPRESSO = 967


@pytest.mark.parametrize(
    ("model", "runtime", "precision"),
    [
        ("squeezenet1.1", "onnxruntime", "float"),
        ("squeezenet1.1-caffe", "opencv", "float"),
        ("mobilenet-v2-quant", "litert", "int8"),
        ("mobilenet-v1-quant", "litert", "int8"),
    ],
)
def test_reference_photos(photos: Path, model: str, runtime: str, precision: str) -> None:
    with Classifier.from_model(model, runtime=runtime, precision=precision, top_k=3) as clf:
        cat = clf.classify(read_image(photos / "chelsea.png"))
        coffee = clf.classify(read_image(photos / "coffee.png"))
    assert cat.top[0].index in CATS
    assert coffee.top[0].index == ESPRESSO
    assert cat.timings.inference > 0 and cat.model == model
    assert abs(sum(lb.score for lb in cat.top) - 1.0) < 0.05 or len(cat.top) == 3


def test_threshold_and_top_k(photos: Path) -> None:
    with Classifier.from_model(
        "mobilenet-v1-quant", runtime="litert", top_k=5, threshold=0.5
    ) as clf:
        prediction = clf.classify(read_image(photos / "chelsea.png"))
    assert len(prediction.top) == 1 and prediction.top[0].score >= 0.5


@pytest.mark.parametrize("top_k", [5, 40])  # the argmax path and the partition path
def test_top_orders_by_score_then_lower_index(top_k: int) -> None:
    # The pre-quantized MobileNet's probabilities come in steps of 1/256: ties are common.
    with Classifier.from_model("mobilenet-v1-quant", runtime="litert", top_k=top_k) as clf:
        probs = np.zeros(len(clf.card.labels), np.float32)
        probs[[7, 3, 500, 999]] = [0.25, 0.25, 0.5, 0.25]
        expected = sorted(range(probs.size), key=lambda i: (-probs[i], i))[:top_k]
        assert [label.index for label in clf.top(probs)] == expected
        assert [label.index for label in clf.top(probs)][:5] == [500, 3, 7, 999, 0]
        clf.threshold = 0.25
        assert [label.index for label in clf.top(probs)] == [500, 3, 7, 999]
        assert probs[500] == 0.5  # top() leaves the vector alone


def test_probabilities_scaling(photos: Path) -> None:
    """A float probability output of all classes goes on as the model gives it (no copy, no
    rescaling); uint8 probabilities whose offset class is dropped are rescaled to sum to 1."""
    with Classifier.from_model("squeezenet1.1", runtime="onnxruntime", precision="float") as clf:
        output = clf.runtime.run(clf.preprocess(read_image(photos / "coffee.png")))
        assert np.shares_memory(clf.probabilities(output), output)
        halved = output / 2  # not a distribution: must come back unchanged
        np.testing.assert_array_equal(clf.probabilities(halved), halved.reshape(-1))
        assert abs(float(output.sum()) - 1.0) < 1e-5  # the model's softmax already normalizes
    with Classifier.from_model("mobilenet-v1-quant", runtime="litert") as clf:
        output = clf.runtime.run(clf.preprocess(read_image(photos / "coffee.png")))
        probs = clf.probabilities(output)
        assert probs.shape == (1000,) and abs(float(probs.sum()) - 1.0) < 1e-5


def test_resize_crop_matches_resize_then_crop() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    out = resize_crop(image, (224, 224), 256)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    with pytest.raises(ValueError, match="H x W x 3"):
        resize_crop(image[:, :, 0], (224, 224), 256)


def test_unknown_runtime_and_option() -> None:
    with pytest.raises(ConfigError, match="litert, onnxruntime, opencv"):
        Classifier.from_model("mobilenet-v1-quant", runtime="tensorrt")
    with pytest.raises(ConfigError, match="accepted: num_threads"):
        Classifier.from_model("mobilenet-v1-quant", runtime="litert", turbo=True)


def test_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="choose one of"):
        Classifier.from_model("resnet50")
    with pytest.raises(ModelError, match="only as TFLite"):
        Classifier.from_model("mobilenet-v2-quant", runtime="onnxruntime")
    with pytest.raises(ModelError, match="does not exist"):
        Classifier.from_model("mobilenet-v2-quant", mirror=tmp_path / "nowhere")
    with pytest.raises(ModelError, match="is not in the model mirror"):
        Classifier.from_model("mobilenet-v2-quant", mirror=tmp_path)


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("not a picture")
    with pytest.raises(SourceError, match="not an image"):
        read_image(path)
