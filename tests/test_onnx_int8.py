"""The int8 ONNX builder (onnxruntime's quantizer) on the real float source, a few calibration images."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_sdk.build.calibration import calibration_images
from edge_sdk.build.onnx_int8 import OnnxQuantSettings, build_onnx_int8, settings_for
from edge_sdk.classifier import Classifier
from edge_sdk.models import ZOO, store
from edge_sdk.models.card import ModelCard
from edge_sdk.preprocess import read_image


# squeezenet1.1-caffe: its own settings (percentile calibration), deterministic too.
@pytest.mark.parametrize("name", ["squeezenet1.1", "squeezenet1.1-caffe"])
def test_build_is_deterministic_and_carded(
    name: str, tmp_path: Path, mirror: Path, imagenet: Path, photos: Path
) -> None:
    images = calibration_images(imagenet)[:4]  # enough to check the mechanics quickly
    first, second = tmp_path / "a" / "m.int8.onnx", tmp_path / "b" / "m.int8.onnx"
    steps: list[tuple[str, int, int]] = []

    @contextlib.contextmanager
    def progress(label: str, count: int) -> Iterator[Callable[[], None]]:
        ticks = [0]
        yield lambda: ticks.__setitem__(0, ticks[0] + 1)
        steps.append((label, count, ticks[0]))

    card = build_onnx_int8(ZOO[name], mirror, first, images, progress=progress)
    # One tick per convolution rounded and per calibration image, also where the histogram
    # calibration (percentile, squeezenet1.1-caffe) reads the images twice.
    assert steps == [("equalizing and rounding weights", 26, 26), ("calibrating", 4, 4)]
    build_onnx_int8(ZOO[name], mirror, second, images)
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in first.parent.iterdir()) == ["m.int8.json", "m.int8.onnx"]
    assert ModelCard.load(store.card_path(first)) == card
    source = store.source_card(ZOO[name], mirror)
    assert card.precision == "int8" and card.notes["settings"] == settings_for(name).describe()
    assert (settings_for(name) == OnnxQuantSettings()) == (name == "squeezenet1.1")
    # Camera pixels as they come, like the TFLite build: BGR uint8 NHWC, nothing to normalize.
    assert (card.mean, card.std, card.colour, card.layout) == ((0.0,) * 3, (1.0,) * 3, "BGR", "NHWC")
    assert (card.input_size, card.resize_shorter, card.labels) == (
        source.input_size,
        source.resize_shorter,
        source.labels,
    )
    assert card.notes["model_sha256"] == store.sha256_of(first)
    assert "x86_without_vnni" not in card.notes  # 7-bit weights: exact on any onnxruntime
    assert first.stat().st_size < 1_400_000
    with Classifier.from_model(first, runtime="onnxruntime") as clf:
        assert clf.runtime.input_spec.dtype == "uint8"
        assert clf.runtime.input_spec.shape == (1, *source.input_size, 3)
        assert clf.classify(read_image(photos / "coffee.png")).top[0].index == 967


def test_bad_arguments(tmp_path: Path, mirror: Path, imagenet: Path) -> None:
    with pytest.raises(ValueError, match="pre-quantized TFLite"):
        build_onnx_int8(ZOO["mobilenet-v2-quant"], mirror, tmp_path / "x.onnx", [imagenet / "x.jpg"])
    with pytest.raises(ValueError, match="no calibration images"):
        build_onnx_int8(ZOO["squeezenet1.1"], mirror, tmp_path / "x.onnx", [])
    with pytest.raises(ValueError, match="float_tail must be one of none, softmax, pool, conv10"):
        OnnxQuantSettings(float_tail="everything")
    with pytest.raises(ValueError, match="equalization must be within"):
        OnnxQuantSettings(equalization=1.5)
    with pytest.raises(ValueError, match="rounded uint8 weights take reduce_range=False"):
        OnnxQuantSettings(weights="uint8")
    assert OnnxQuantSettings(weights="uint8", weight_rounding=False).weights == "uint8"
    assert OnnxQuantSettings(weights="uint8", reduce_range=False).weight_levels == 127
    assert not (tmp_path / "x.onnx").exists()


def test_float_convs_stay_float_and_unrounded(
    tmp_path: Path, mirror: Path, imagenet: Path, photos: Path
) -> None:
    """squeezenet1.0-dc keeps its fire2 module float (MODEL_SETTINGS): those three convolutions
    run on float weights that are neither rounded nor quantized, every other one on int8
    weights; the card records the choice and the file stays within the 1.4 MB budget."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    entry, settings = ZOO["squeezenet1.0-dc"], settings_for("squeezenet1.0-dc")
    fire2 = {"fire2/conv1x1_1", "fire2/conv1x1_2", "fire2/conv3x3_2"}
    assert set(settings.float_convs) == fire2
    out = tmp_path / "dc.int8.onnx"
    card = build_onnx_int8(entry, mirror, out, calibration_images(imagenet)[:4])
    assert card.notes["settings"]["float_convs"] == list(settings.float_convs)
    assert ModelCard.load(store.card_path(out)) == card
    assert out.stat().st_size < 1_400_000
    graph = onnx.load(str(out)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    convs = {n.name: n for n in graph.node if n.op_type == "Conv"}
    assert len(convs) == 26
    for name, node in convs.items():
        weight = node.input[1]
        if name in fire2:
            w = inits[weight]  # a float initializer read directly: no DequantizeLinear
            assert w.dtype == np.float32
            # On neither the 7-bit grid the other weights are rounded onto nor the 8-bit one.
            rows = w.reshape(len(w), -1)
            for levels in (64, 127):
                steps = rows / (np.abs(rows).max(axis=1, keepdims=True) / levels)
                assert not np.allclose(steps, np.round(steps), atol=1e-3)
        else:
            assert weight not in inits and weight.endswith("_DequantizeLinear_Output")
            # Full 8-bit int8 weights (no reduce_range): each channel's largest at 127 steps.
            q = inits[f"{weight.removesuffix('_DequantizeLinear_Output')}_quantized"]
            assert q.dtype == np.int8
            peaks = np.abs(q.astype(np.int16)).reshape(len(q), -1).max(axis=1)
            assert set(peaks) <= {0, 127}  # 0: fire7/conv1x1_2 has one pruned, all-zero channel
    # Plain onnxruntime would saturate these weights on x86 without VNNI: the card says what
    # edge-sdk's runtime sets (tests/test_no_vnni.py).
    assert card.notes["x86_without_vnni"] == "needs onnxruntime session config session.x64quantprecision=1"
    with Classifier.from_model(out, runtime="onnxruntime") as clf:
        assert clf.classify(read_image(photos / "coffee.png")).top[0].index == 967


def test_float_convs_must_exist(tmp_path: Path, mirror: Path, imagenet: Path) -> None:
    settings = OnnxQuantSettings(float_convs=("fire2/conv1x1_1", "fire99/expand"))
    images = calibration_images(imagenet)[:1]
    with pytest.raises(ValueError, match="no convolution named fire99/expand; the model has conv1, fire2/"):
        build_onnx_int8(ZOO["squeezenet1.0-dc"], mirror, tmp_path / "x.onnx", images, settings)
    assert not (tmp_path / "x.onnx").exists()


def test_padded_1x1_conv_becomes_an_explicit_pad(tmp_path: Path, mirror: Path) -> None:
    """SqueezeNet 1.0's last conv (1x1, pad 1) is split into Pad + Conv with the same outputs:
    OpenCV DNN mis-computes the padded 1x1 conv once quantized, and gets the split one right."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    from edge_sdk.build.onnx_int8 import _explicit_pads

    source = store.source_path(ZOO["squeezenet1.0-dc"], mirror)
    out = tmp_path / "split.onnx"
    assert _explicit_pads(source, out)
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert ops.count("Pad") == 1 and ops[ops.index("Pad") + 1] == "Conv"
    x = np.random.default_rng(0).uniform(-120, 150, (1, 3, 227, 227)).astype(np.float32)
    before = ort.InferenceSession(str(source)).run(None, {"data": x})[0]
    after = ort.InferenceSession(str(out)).run(None, {"data": x})[0]
    np.testing.assert_array_equal(before, after)
    # squeezenet1.1 has no padded 1x1 conv: nothing to rewrite, nothing written.
    assert not _explicit_pads(store.source_path(ZOO["squeezenet1.1"], mirror), tmp_path / "none.onnx")
    assert not (tmp_path / "none.onnx").exists()


# The default (int8 weights, reduce_range: +-64 steps, zero point 0), squeezenet1.0-dc's (int8,
# +-127) and uint8 weights (+-127 steps around zero point 128), all on squeezenet1.1 for speed.
@pytest.mark.parametrize(
    ("settings", "zero_point", "levels"),
    [
        (OnnxQuantSettings(), 0, 64),
        (OnnxQuantSettings(reduce_range=False), 0, 127),
        (OnnxQuantSettings(weights="uint8", reduce_range=False), 128, 127),
    ],
    ids=["int8-7bit", "int8", "uint8"],
)
def test_quantizer_keeps_the_prerounded_weights(
    settings: OnnxQuantSettings, zero_point: int, levels: int, tmp_path: Path, mirror: Path, imagenet: Path
) -> None:
    """The error-feedback rounding lands on exactly the grid onnxruntime's quantizer picks: the
    weights it stores, less their zero point, times its scales are the rounded float weights
    (to the bit where the step is max|w| / 64, to float32 rounding where it is max|w| / 127),
    so the quantizer rounds nothing a second time; each channel keeps its largest
    weight at the grid's end; the pixel input's quantization is the identity (the uint8 input
    gives the float input's outputs bit for bit), and the folded, rounded float model barely
    moves."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from edge_sdk.build.calibration import calibration_pixels
    from edge_sdk.build.onnx_int8 import _pixel_input, _prepare_weights, _quantize, _uint8_input

    entry = ZOO["squeezenet1.1"]
    assert settings.weight_rounding and settings.weight_levels == levels
    images = calibration_images(imagenet)[:4]
    source = store.source_path(entry, mirror)
    prepared, graph, quantized = tmp_path / "prepared.onnx", tmp_path / "pixels.onnx", tmp_path / "q.onnx"
    pixels = np.stack(list(calibration_pixels(images, entry.input_size, entry.resize_shorter)))
    _prepare_weights(entry, source, prepared, pixels.astype(np.float32), settings)
    nchw = _pixel_input(prepared, graph)
    _quantize(graph, quantized, pixels.astype(np.float32), settings, nchw)
    rounded = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(prepared)).graph.initializer}
    stored = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(quantized)).graph.initializer}
    weights = [name for name, w in rounded.items() if w.ndim == 4]
    assert len(weights) == 26
    for name in weights:
        stored_q, scale = stored[f"{name}_quantized"], stored[f"{name}_scale"]
        assert stored_q.dtype == (np.uint8 if zero_point else np.int8)
        np.testing.assert_array_equal(stored[f"{name}_zero_point"], zero_point)
        q = stored_q.astype(np.float32) - zero_point
        steps = rounded[name] / scale[:, None, None, None]
        np.testing.assert_array_equal(np.round(steps), q)
        np.testing.assert_allclose(steps, q, rtol=0, atol=1e-4)  # on the grid, not beside it
        if levels == 64:  # a power of two: the step is exact, and so is every weight
            np.testing.assert_array_equal(q * scale[:, None, None, None], rounded[name])
        np.testing.assert_array_equal(np.abs(q).reshape(len(q), -1).max(axis=1), levels)
    # The pixels' own quantization is the identity, so removing it changes no output.
    assert float(stored[f"{nchw}_scale"]) == 1.0 and int(stored[f"{nchw}_zero_point"]) == 0
    quantized_float_input = ort.InferenceSession(str(quantized))
    expected = [quantized_float_input.run(None, {"pixels": p[None].astype(np.float32)})[0] for p in pixels]
    _uint8_input(quantized, nchw)
    uint8_input = ort.InferenceSession(str(quantized))
    for p, want in zip(pixels, expected, strict=True):
        np.testing.assert_array_equal(uint8_input.run(None, {"pixels": p[None]})[0], want)

    # Folded and rounded, the float model takes pixels and says what the source says.
    with Classifier.from_model(source, runtime="onnxruntime", mirror=mirror) as clf:
        before = np.concatenate([clf.runtime.run(clf.preprocess(read_image(p))) for p in images])
    folded = ort.InferenceSession(str(graph))
    after = np.concatenate([folded.run(None, {"pixels": p[None].astype(np.float32)})[0] for p in pixels])
    assert not np.allclose(before, after, atol=1e-6)  # the weights did change ...
    assert (before.argmax(1) == after.argmax(1)).all()  # ... but not what the model says


def test_session_config_follows_the_card(
    model_home: Path, mirror: Path, imagenet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an x86 CPU without VNNI only a card that says 7-bit int8 weights leaves the session
    plain; a copy of the same file without its card, or with a card that cannot be read, gets
    the U8U8 entry. On this CPU (VNNI) nothing gets it."""
    import shutil

    from edge_sdk.build.builder import build_model
    from edge_sdk.runtimes import onnxruntime as ortmod

    built = build_model(
        "squeezenet1.1", precision="int8", fmt="onnx", mirror=mirror, images=imagenet, home=model_home
    )
    bare = tmp_path / "bare.onnx"
    shutil.copyfile(built.path, bare)
    assert ortmod.OnnxRuntime(bare).session_config == (
        ortmod.PRECISE_X64_SESSION_CONFIG if ortmod.x86_without_vnni() else {}
    )
    # The CPU without VNNI is emulated for real in tests/test_no_vnni.py; here only the card's
    # part of the choice is checked, so the CPU check is told what such a CPU would answer.
    monkeypatch.setattr(ortmod, "x86_without_vnni", lambda: True)
    assert ortmod.OnnxRuntime(built.path).session_config == {}
    assert ortmod.OnnxRuntime(bare).session_config == ortmod.PRECISE_X64_SESSION_CONFIG
    store.card_path(bare).write_text("{not json")
    assert ortmod.OnnxRuntime(bare).session_config == ortmod.PRECISE_X64_SESSION_CONFIG
