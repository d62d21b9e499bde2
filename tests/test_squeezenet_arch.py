"""SqueezeNet in Keras: the reference weights loaded by layer reproduce the ONNX reference outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the model builder needs the build extra")
ort = pytest.importorskip("onnxruntime")

from edge_sdk.build.onnx_weights import (  # noqa: E402
    fold_input_normalization,
    load_onnx_weights,
    read_onnx_architecture,
)
from edge_sdk.build.squeezenet import squeezenet  # noqa: E402
from edge_sdk.errors import ModelError  # noqa: E402
from edge_sdk.models.zoo import ZOO  # noqa: E402
from edge_sdk.preprocess import read_image, resize_crop  # noqa: E402


@pytest.mark.parametrize("name", ["squeezenet1.1", "squeezenet1.1-caffe", "squeezenet1.0-dc"])
def test_reference_weights_reproduce_onnx(name: str, mirror: Path, photos: Path) -> None:
    entry = ZOO[name]
    source = mirror / entry.source
    arch = read_onnx_architecture(source)
    assert arch.version == entry.architecture.removeprefix("squeezenet")
    model = squeezenet(
        arch.version,  # type: ignore[arg-type]
        input_size=entry.input_size,
        conv10_padding=arch.conv10_padding,
    )
    load_onnx_weights(model, source)
    session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    crops = np.stack(
        [
            resize_crop(read_image(photos / p), entry.input_size, entry.resize_shorter)
            for p in ("chelsea.png", "coffee.png", "astronaut.png")
        ]
    ).astype(np.float32)
    pixels = crops[..., ::-1] if entry.colour == "RGB" else crops
    x = (pixels - np.asarray(entry.mean, np.float32)) / np.asarray(entry.std, np.float32)
    reference = np.concatenate(
        [session.run(None, {"data": img.transpose(2, 0, 1)[np.newaxis]})[0] for img in x]
    )
    out = model.predict(x, verbose=0)
    np.testing.assert_allclose(out, reference, atol=2e-6, rtol=1e-4)
    assert list(out.argmax(1)[:2]) == list(reference.argmax(1)[:2])

    # Folding mean/std and the channel order into conv1: BGR pixels straight in, same output.
    fold_input_normalization(model, entry.mean, entry.std, entry.colour)
    np.testing.assert_allclose(model.predict(crops, verbose=0), reference, atol=2e-6, rtol=1e-4)


def test_pooling_sizes_follow_caffe_ceil_mode() -> None:
    sizes = {}
    for version, size in (("1.1", 224), ("1.1", 227), ("1.0", 227), ("1.0", 224)):
        model = squeezenet(version, input_size=(size, size), output="logit_map")  # type: ignore[arg-type]
        sizes[version, size] = [model.get_layer(f"pool{i}").output.shape[1] for i in (1, 2, 3)]
    assert sizes["1.1", 224] == [55, 27, 13]
    assert sizes["1.1", 227] == [56, 28, 14]
    assert sizes["1.0", 227] == [55, 27, 13]
    assert sizes["1.0", 224] == [54, 27, 13]  # torchvision 1.0: 109 -> 54 -> 27 -> 13


def test_bypass_variants_and_new_head(mirror: Path) -> None:
    plain = squeezenet("1.1")
    simple = squeezenet("1.1", bypass="simple")
    complex_ = squeezenet("1.1", bypass="complex")
    # Simple bypass adds no weights; complex adds 1x1 projections around fire2, 4, 6 and 8.
    assert simple.count_params() == plain.count_params()
    projections = sum(c_in * c_out + c_out for c_in, c_out in ((64, 128), (128, 256), (256, 384), (384, 512)))
    assert complex_.count_params() == plain.count_params() + projections
    assert [layer.name for layer in simple.layers if layer.name.endswith("_bypass")] == [
        "fire3_bypass", "fire5_bypass", "fire7_bypass", "fire9_bypass",
    ]
    # A new 10-class head keeps the reference features and its own conv10.
    head = squeezenet("1.1", num_classes=10, bypass="simple", output="logits")
    load_onnx_weights(head, mirror / "squeezenet1.1.onnx", head=False)
    assert head.output.shape == (None, 10)
    with pytest.raises(ModelError, match="conv10"):
        load_onnx_weights(head, mirror / "squeezenet1.1.onnx")
    with pytest.raises(ModelError, match="shape"):
        load_onnx_weights(squeezenet("1.0", input_size=(227, 227)), mirror / "squeezenet1.1.onnx")


def test_bad_arguments_and_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="version"):
        squeezenet("2.0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bypass"):
        squeezenet("1.1", bypass="dense")  # type: ignore[arg-type]
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not onnx at all" * 10)
    with pytest.raises(ModelError, match="not a readable ONNX"):
        read_onnx_architecture(junk)


def test_rounding_with_feedback_beats_round_to_nearest() -> None:
    from edge_sdk.build.weight_rounding import grid_scale, round_to_nearest, round_with_feedback

    rng = np.random.default_rng(0)
    # Correlated, non-negative inputs (like ReLU outputs) to a 3x3 conv with 8 in, 16 out.
    mixing = rng.normal(size=(72, 72))
    x = np.maximum(rng.normal(size=(4000, 72)) @ mixing, 0.0)
    kernel = rng.normal(scale=0.05, size=(3, 3, 8, 16)).astype(np.float32)
    moment = x.T @ x / len(x)
    nearest = round_to_nearest(kernel)
    feedback = round_with_feedback(kernel, moment)

    def output_error(rounded: np.ndarray) -> float:
        return float(np.mean((x @ (rounded - kernel).reshape(72, 16)) ** 2))

    assert output_error(feedback) < 0.7 * output_error(nearest)
    # Still on the converter's grid, with the same per-channel scale.
    matrix = feedback.reshape(72, 16).T.astype(np.float64)
    scale = grid_scale(kernel.reshape(72, 16).T.astype(np.float64))[:, None]
    steps = matrix / scale
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)
    assert np.all(np.abs(np.round(steps)).max(axis=1) == 127)


def test_activation_equalization_is_exact_in_float(mirror: Path, photos: Path) -> None:
    from edge_sdk.build.equalization import channel_peaks, equalize_activations

    entry = ZOO["squeezenet1.1-caffe"]
    model = squeezenet("1.1", input_size=entry.input_size, output="logits")
    load_onnx_weights(model, mirror / entry.source)
    fold_input_normalization(model, entry.mean, entry.std, entry.colour)
    crops = np.stack(
        [
            resize_crop(read_image(photos / p), entry.input_size, entry.resize_shorter)
            for p in ("chelsea.png", "coffee.png", "astronaut.png", "rocket.png")
        ]
    ).astype(np.float32)
    before = model.predict(crops, verbose=0)
    spread_before = channel_peaks(model, ["fire5_squeeze1x1"], crops)["fire5_squeeze1x1"]
    equalize_activations(model, crops[:2], strength=1.0)
    np.testing.assert_allclose(model.predict(crops, verbose=0), before, rtol=1e-4, atol=1e-3)
    # On the images it was measured on, every live channel now reaches the same peak.
    spread = channel_peaks(model, ["fire5_squeeze1x1"], crops[:2])["fire5_squeeze1x1"]
    live = spread > 0
    assert np.ptp(spread[live]) < 1e-3 * spread.max() < np.ptp(spread_before)
    with pytest.raises(ValueError, match="bypass"):
        equalize_activations(squeezenet("1.1", bypass="simple"), crops[:1])
