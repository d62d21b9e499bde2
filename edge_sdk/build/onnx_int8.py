"""int8 ONNX built with onnxruntime's static quantizer, for the `onnxruntime` and `opencv` runtimes.

The float ONNX source is quantized in QDQ form (QuantizeLinear / DequantizeLinear pairs around
each quantized operator, which onnxruntime fuses into integer kernels at load time): weights
per output channel, activations calibrated on the `calibration` split (min/max; by percentile
where `MODEL_SETTINGS` says so). As the TFLite build, the int8 model takes BGR uint8 NHWC camera
pixels as they come: the normalization and channel order are folded into ``conv1``, a Transpose
to NCHW is put in front, and the input's quantization is fixed at scale 1, zero point 0, so the
quantizer's first QuantizeLinear is the identity on pixels and is removed, leaving a uint8
input (Transpose -> DequantizeLinear -> Conv, which onnxruntime runs as an integer convolution).
Calibration feeds the crops of `calibration_pixels`, the pixels inference gets. The float
normalization and NCHW planes the source needs cost the Classifier 0.1-0.15 ms a frame
(docs/benchmarks.md).

Why these settings (measured; table in docs/benchmarks.md, "Model accuracy (int8 ONNX on
onnxruntime)"): on x86 CPUs without VNNI, onnxruntime multiplies uint8 activations by int8
weights with VPMADDUBSW, which adds two products into a saturating int16. With full-range
weights those sums overflow: on an emulated Haswell (qemu-x86_64 -cpu Haswell) the same int8
model lost 9 points of top-1 against the same file on a VNNI CPU. `reduce_range` keeps
weights within 7 bits, so two products always fit: the emulated Haswell then gives outputs
bit-identical to the VNNI CPU, for a quarter point of top-1 on squeezenet1.1 (within the noise
of 800 images). 7-bit activations with 8-bit weights cannot overflow either, but agreed far worse
with the float model (squeezenet1.0-dc on the calibration split: 85.5 against 91.0%). int8
activations (S8S8) ran 3.5x slower than U8S8 on the VNNI CPU; uint8 weights (U8U8) are exact
too at the full 8 bits, and agree better with the float model, but ran 2x slower. So 7 bits
are the default, and the files are exact on any onnxruntime. squeezenet1.0-dc, which 7 bits
kept short of 95% agreement, gets 8-bit int8 weights instead (`MODEL_SETTINGS`, builder 11),
exact because the `onnxruntime` runtime asks onnxruntime to run such weights as U8U8 on x86
CPUs without VNNI, and only there (`PRECISE_X64_SESSION_CONFIG`; its card says so for other
users of the file); on VNNI and ARM64 CPUs it keeps U8S8's speed.
Keeping the global average pool and the softmax in float (`float_tail="pool"`) averages the
169 int8 logits per class in float instead of rounding them once more, at no cost in size.

The quantizer rounds each weight to its nearest step alone and corrects no bias. So, as in
the TFLite build, the float model's activation channels are first equalized (strength 0.5) and
its weights rounded with error feedback and bias correction onto exactly the grid the quantizer
then picks (`edge_sdk.build.onnx_rounding`), so its own rounding changes nothing: top-1
agreement with the float model 93.0 / 93.8 / 88.6% -> 97.0 / 94.9 / 94.0% (squeezenet1.1,
1.1-caffe, 1.0-dc). Rounding without equalization gave 96.2 / 94.2 / 91.5%; strength 1 on
1.0-dc 93.8%. Percentile calibration with strength 0.25, picked for 1.1-caffe on the
calibration split, takes it to 96.4% (builder 7). With the folded pixel input (builder 8):
96.5 / 96.1 / 92.8%, mean |Δp| a little lower on all three (the agreement moved by 2-10 of
800 images). Builder 9 leaves squeezenet1.0-dc's fire2 module float (`MODEL_SETTINGS`):
its squeeze output is the activation whose rounding costs most, and the module's weights are
few; mean |Δp| 0.098 -> 0.075, agreement 93.8%. Builder 11 gives its other weights the
full 8 bits: 0.060, 95.3%.

One more graph rewrite before quantizing: a padded 1x1 convolution (SqueezeNet
1.0's last one has pad 1) becomes an explicit zero Pad followed by the unpadded convolution. The
float model is unchanged (bit-identical outputs), but OpenCV DNN 5.0 computes a wrong QDQ 1x1
convolution when it carries its own padding (uniform scores on squeezenet1.0-dc), and gets the
explicit Pad right; onnxruntime gives the same result either way.

Needs the `build` extra (onnx, onnxruntime; TensorFlow for the folding, equalization and weight
rounding); never imported on the frame path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from onnxruntime import quantization as ortq

from edge_sdk import registry
from edge_sdk.build.calibration import calibration_pixels
from edge_sdk.models import store
from edge_sdk.models.card import ModelCard
from edge_sdk.models.zoo import ZooEntry
from edge_sdk.runtimes.onnxruntime import PRECISE_X64_SESSION_CONFIG

if TYPE_CHECKING:
    from edge_sdk.build.builder import ProgressFactory

_METHODS = {
    "minmax": ortq.CalibrationMethod.MinMax,
    "percentile": ortq.CalibrationMethod.Percentile,
    "entropy": ortq.CalibrationMethod.Entropy,
}
_TYPES = {"uint8": ortq.QuantType.QUInt8, "int8": ortq.QuantType.QInt8}
#: float_tail -> the op type where the float end of the graph starts (its last occurrence).
_TAIL_START = {"softmax": "Flatten", "pool": "GlobalAveragePool", "conv10": "Conv"}
#: Name of the built model's uint8 NHWC input.
PIXEL_INPUT = "pixels"


@dataclass(frozen=True)
class OnnxQuantSettings:
    """The quantizer's choices; the defaults are the measured best (see the module docstring).

    Attributes:
        activations: "uint8" or "int8" activations.
        weights: "int8" or "uint8" weights (per channel either way). uint8 weights run on
            onnxruntime's U8U8 kernels, which are exact on every CPU at the full 8 bits, but
            on x86 about twice as slow as U8S8 (int8 weights).
        reduce_range: 7-bit weights: int8 weights cannot then saturate onnxruntime's U8S8
            kernels on x86 without VNNI, whatever the session's configuration. Full 8-bit
            int8 weights are exact there only with `PRECISE_X64_SESSION_CONFIG`. Not with
            rounded uint8 weights, which need no such care.
        symmetric_activations: Zero point 0 for activations (int8 only sensibly).
        calibration: "minmax", "percentile" or "entropy".
        float_tail: Which end of the graph stays float: "none"; "softmax" (the probabilities
            are not rounded to 256 levels); "pool" (also the global average pool, so the class
            logits are means of 169 int8 values instead of one more int8 rounding: fewer top-1
            ties, as the TFLite build's logit map); "conv10" (also the last convolution, whose
            float weights add 1.5 MB).
        equalization: Activation equalization strength applied to the float model first
            (`edge_sdk.build.equalization`; 0: none).
        weight_rounding: Round the float weights with error feedback and bias correction onto
            the quantizer's weight grid first (`edge_sdk.build.onnx_rounding`);
            False leaves the rounding to the quantizer (nearest step).
        float_convs: Names of convolutions (ONNX node names) left float, weights unrounded:
            for a few small layers whose output error dominates. Their inputs and outputs
            are float too, where no other quantized node reads them.
    """

    activations: str = "uint8"
    weights: str = "int8"
    reduce_range: bool = True
    symmetric_activations: bool = False
    calibration: str = "minmax"
    float_tail: str = "pool"
    equalization: float = 0.5
    weight_rounding: bool = True
    float_convs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("activations", self.activations, _TYPES),
            ("weights", self.weights, _TYPES),
            ("calibration", self.calibration, _METHODS),
            ("float_tail", self.float_tail, ("none", *_TAIL_START)),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        if not 0.0 <= self.equalization <= 1.0:
            raise ValueError(f"equalization must be within [0, 1]; got {self.equalization}")
        if self.weight_rounding and self.weights == "uint8" and self.reduce_range:
            raise ValueError(
                "rounded uint8 weights take reduce_range=False (onnxruntime's U8U8 kernels never saturate)"
            )

    @property
    def weight_levels(self) -> int:
        """Steps each side of zero of the quantizer's symmetric per-channel int8 weight grid.

        With reduce_range onnxruntime takes the range (-64, 64) and sets the scale to
        2 max|w| / (64 - -64) = max|w| / 64 (``quant_utils.compute_scale_zp``), zero point 0;
        without, -127..127 and max|w| / 127, as TFLite. Checked by reading the quantized
        initializers back (tests/test_onnx_int8.py). uint8 weights use that 127-step grid too,
        shifted by a zero point of 128 (`_uint8_weight_grids`).
        """
        return 64 if self.reduce_range else 127

    def describe(self) -> dict[str, Any]:
        """The settings as the card's JSON keeps them (lists, not tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


#: Models whose settings differ from the defaults, as chosen on the calibration split (each
#: variant built on all 200 calibration images and scored there, plus built on one half and
#: scored on the other; docs/benchmarks.md): percentile calibration beat min/max at every
#: equalization strength but one on squeezenet1.1-caffe. On squeezenet1.0-dc the fire2
#: module stays float (builder 9): its squeeze output, 16 channels with a long tail, is the
#: activation whose uint8 rounding costs most, and its three convolutions (11,776 weights,
#: 31 KB more file) carry large rounding errors too; the mean L1 distance from the float model
#: fell by 28% and 16% on the two half-splits, for about 1% more time per call. Its other
#: weights have the full 8 bits (builder 11): the 7-bit grid alone cost it twice the L1
#: distance of 8 bits, and 8-bit weights lowered the distance by another 18% and 23% on the
#: half-splits. Such weights saturate U8S8 on x86 without VNNI unless onnxruntime converts them
#: to uint8 at load time (`PRECISE_X64_SESSION_CONFIG`, which the `onnxruntime` runtime sets there).
MODEL_SETTINGS: dict[str, OnnxQuantSettings] = {
    "squeezenet1.1-caffe": OnnxQuantSettings(calibration="percentile", equalization=0.25),
    "squeezenet1.0-dc": OnnxQuantSettings(
        reduce_range=False,
        float_convs=("fire2/conv1x1_1", "fire2/conv1x1_2", "fire2/conv3x3_2"),
    ),
}


def settings_for(name: str) -> OnnxQuantSettings:
    """The settings `build_onnx_int8` uses for zoo model `name` unless given others."""
    return MODEL_SETTINGS.get(name, OnnxQuantSettings())


class _PixelReader(ortq.CalibrationDataReader):  # type: ignore[misc]
    """Feeds calibration crops to the quantizer, one (1, H, W, 3) float32 batch at a time."""

    def __init__(
        self, input_name: str, pixels: npt.NDArray[np.float32], tick: Callable[[], None] | None = None
    ) -> None:
        self._input_name = input_name
        self._pixels = pixels
        self._tick = tick
        self._iter: Iterator[dict[str, npt.NDArray[Any]]] = self._tensors()

    def _tensors(self) -> Iterator[dict[str, npt.NDArray[Any]]]:
        for image in self._pixels:
            yield {self._input_name: image[np.newaxis]}
            if self._tick is not None:
                self._tick()

    def get_next(self) -> dict[str, npt.NDArray[Any]] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        # Histogram calibration reads the images more than once; progress counts the first pass.
        self._tick = None
        self._iter = self._tensors()


def _convolutions(model_path: Path) -> int:
    return sum(op == "Conv" for op, _ in _graph_facts(model_path)[1])


def _graph_facts(model_path: Path) -> tuple[str, list[tuple[str, str]]]:
    """Return the image input's name and the (op type, name) of every node, in graph order."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in initializers]
    return inputs[0], [(n.op_type, n.name) for n in graph.node]


def _explicit_pads(model_path: Path, out_path: Path) -> bool:
    """Write `model_path` to `out_path` with every padded 1x1 Conv split into Pad + Conv.

    Returns False (and writes nothing) when the graph has no such convolution.
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(model_path))
    graph = model.graph
    nodes: list[Any] = []
    changed = False
    for node in graph.node:
        attrs = {a.name: a for a in node.attribute}
        kernel = list(attrs["kernel_shape"].ints) if "kernel_shape" in attrs else []
        pads = list(attrs["pads"].ints) if "pads" in attrs else []
        if node.op_type == "Conv" and kernel == [1, 1] and any(pads):
            top, left, bottom, right = pads
            # ONNX Pad lists all begins, then all ends, over N, C, H, W.
            amounts = numpy_helper.from_array(
                np.array([0, 0, top, left, 0, 0, bottom, right], np.int64), f"{node.name}_pad_amounts"
            )
            graph.initializer.append(amounts)
            padded = f"{node.input[0]}_padded_for_{node.name}"
            nodes.append(helper.make_node(
                "Pad", [node.input[0], amounts.name], [padded], name=f"{node.name}_pad", mode="constant"
            ))
            node.input[0] = padded
            attrs["pads"].ints[:] = [0, 0, 0, 0]
            changed = True
        nodes.append(node)
    if not changed:
        return False
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(out_path))
    return True


def _prepare_weights(
    entry: ZooEntry,
    source: Path,
    out_path: Path,
    pixels: npt.NDArray[np.float32],
    settings: OnnxQuantSettings,
    on_layer: Callable[[str], None] | None = None,
) -> None:
    """Write `source` folded, equalized and rounded (still float) to `out_path` (`onnx_rounding`).

    `on_layer` is called once per convolution rounded.
    """
    # The TFLite path's guard: TensorFlow writes its start-up chatter from C++ straight
    # to the terminal. Imported here, not at the top: builder imports this module.
    from edge_sdk.build.builder import quiet_native_logs

    with quiet_native_logs():
        try:
            from edge_sdk.build.onnx_rounding import round_onnx_weights
        except ImportError as exc:
            raise registry.missing_package(exc, "folding and rounding the int8 ONNX weights") from None
        round_onnx_weights(
            entry,
            source,
            out_path,
            pixels,
            levels=settings.weight_levels if settings.weight_rounding else None,
            equalization=settings.equalization,
            float_convs=settings.float_convs,
            on_layer=on_layer,
        )


def _pixel_input(model_path: Path, out_path: Path) -> str:
    """Write `model_path` to `out_path` taking (1, H, W, 3) pixels, transposed to its NCHW input.

    Returns:
        The name of the NCHW tensor (the model's former input), whose quantization
        `_quantize` fixes and `_uint8_input` then turns into the identity.
    """
    import onnx
    from onnx import helper

    model = onnx.load(str(model_path))
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    image = next(i for i in graph.input if i.name not in initializers)
    nchw: str = image.name
    dims = [d.dim_value for d in image.type.tensor_type.shape.dim]
    pixels = helper.make_tensor_value_info(
        PIXEL_INPUT, onnx.TensorProto.FLOAT, [1, dims[2], dims[3], dims[1]]
    )
    graph.node.insert(
        0, helper.make_node("Transpose", [PIXEL_INPUT], [nchw], name="nhwc_to_nchw", perm=[0, 3, 1, 2])
    )
    graph.input.remove(image)
    graph.input.insert(0, pixels)
    onnx.save(model, str(out_path))
    return nchw


def _uint8_input(model_path: Path, nchw: str) -> None:
    """Make the quantized model's input uint8 by removing the QuantizeLinear of tensor `nchw`.

    Its scale is 1 and zero point 0 (fixed by `_quantize`), so on 0..255 pixels it changes
    nothing: the Transpose then moves uint8 values, and the DequantizeLinear after it reads them.
    """
    import onnx

    model = onnx.load(str(model_path))
    graph = model.graph
    (quant,) = [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == nchw]
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == quant.output[0]:
                node.input[i] = nchw
    graph.node.remove(quant)
    graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.UINT8
    for info in [v for v in graph.value_info if v.name == nchw]:
        graph.value_info.remove(info)  # shape inference recorded it as float
    onnx.checker.check_model(model)
    onnx.save(model, str(model_path))


def _tail(nodes: list[tuple[str, str]], which: str) -> list[str]:
    """Names of the nodes from the last `_TAIL_START[which]` node to the end."""
    if which == "none":
        return []
    start = max(i for i, (op, _) in enumerate(nodes) if op == _TAIL_START[which])
    return [name for _, name in nodes[start:]]


def _drop_preprocessing_advice(record: logging.LogRecord) -> bool:
    # The quantizer advises its shape-inference pre-pass on every call, through the root logger,
    # onto the terminal; the builder's graphs are already what that pass would give.
    return not record.getMessage().startswith("Please consider")


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    # Its histogram calibration also prints a line of its own to stdout.
    root = logging.getLogger()
    root.addFilter(_drop_preprocessing_advice)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.removeFilter(_drop_preprocessing_advice)


def _uint8_weight_grids(float_model: Path, settings: OnnxQuantSettings) -> dict[str, list[dict[str, Any]]]:
    """Tensor overrides that keep the quantizer's uint8 weights on the grid they were rounded onto.

    Left alone, the quantizer's symmetric uint8 grid has a step of max|w| / 127.5 (255 steps
    over [-max|w|, max|w|], zero point 128), which puts each channel's largest weight half a
    step off the grid, so no rounding done beforehand could survive it. Each channel's scale
    is given instead as max|w| / 127, the grid `round_onnx_weights` rounded onto, with the
    zero point 128 that onnxruntime's per-channel QLinearConv needs to be the same in every
    channel: the stored weights are then 1..255.
    """
    import onnx
    from onnx import numpy_helper

    from edge_sdk.build.weight_rounding import grid_scale  # needs TensorFlow, as the rounding did

    graph = onnx.load(str(float_model)).graph
    inits = {t.name: t for t in graph.initializer}
    grids: dict[str, list[dict[str, Any]]] = {}
    for node in graph.node:
        if node.op_type != "Conv" or node.name in settings.float_convs or node.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        # The rounding's own steps; a pruned, all-zero channel gets step 1 there, where a step
        # of 0 would divide its bias by zero.
        steps = grid_scale(w.reshape(w.shape[0], -1), settings.weight_levels)
        channels = [
            {"scale": np.array(step, np.float32), "zero_point": np.array(128, np.uint8)} for step in steps
        ]
        channels[0]["axis"] = 0
        grids[node.input[1]] = channels
    return grids


def _quantize(
    float_model: Path,
    out_path: Path,
    pixels: npt.NDArray[np.float32],
    settings: OnnxQuantSettings,
    nchw: str,
    tick: Callable[[], None] | None = None,
) -> None:
    """Run onnxruntime's static quantizer on `float_model` as `settings` say.

    The NCHW pixel tensor `nchw` gets scale 1, zero point 0 whatever the calibration saw, so
    every pixel value is one uint8 step (see `_uint8_input`). `tick` is called once per
    calibration image.
    """
    input_name, nodes = _graph_facts(float_model)
    identity = {"scale": np.array(1.0, np.float32), "zero_point": np.array(0, np.uint8)}
    overrides: dict[str, list[dict[str, Any]]] = {nchw: [identity]}
    if settings.weights == "uint8" and settings.weight_rounding:
        overrides.update(_uint8_weight_grids(float_model, settings))
    with _quiet_quantizer():
        ortq.quantize_static(
            str(float_model),
            str(out_path),
            _PixelReader(input_name, pixels, tick),
            quant_format=ortq.QuantFormat.QDQ,
            per_channel=True,
            reduce_range=settings.reduce_range,
            activation_type=_TYPES[settings.activations],
            weight_type=_TYPES[settings.weights],
            calibrate_method=_METHODS[settings.calibration],
            nodes_to_exclude=_tail(nodes, settings.float_tail) + list(settings.float_convs),
            extra_options={
                "ActivationSymmetric": settings.symmetric_activations,
                "TensorQuantOverrides": overrides,
            },
        )


def build_onnx_int8(
    entry: ZooEntry,
    mirror: Path,
    out_path: Path,
    calibration_images: list[Path],
    settings: OnnxQuantSettings | None = None,
    progress: ProgressFactory | None = None,
) -> ModelCard:
    """Quantize `entry`'s float ONNX source to int8 and write it with its card.

    Same inputs give byte-identical files: calibration reads the images in the order given and
    neither the weight rounding nor the quantizer has randomness (the rounding's linear algebra
    is reproducible on one machine and environment, as in the TFLite build).

    Args:
        entry: A SqueezeNet zoo entry (float ONNX source).
        mirror: Folder holding the source and label files.
        out_path: Where to write the .onnx (normally ``store.built_path(name, "onnx", "int8")``);
            the card goes next to it.
        calibration_images: The images to calibrate on (the `calibration` split).
        settings: Quantizer choices; default `settings_for(entry.name)`, the measured best.
        progress: Shows the weight rounding (one tick per convolution) and the calibration
            (one per image); see `edge_sdk.build.builder.ProgressFactory`.

    Returns:
        The card written next to `out_path`.

    Raises:
        ValueError: `entry` has no float ONNX source, or no calibration images.
        ModelError: the source is missing or corrupt; an image cannot be read.
    """
    if entry.prebuilt:
        raise ValueError(f"{entry.name} is pre-quantized TFLite; only ONNX sources can be quantized")
    if not calibration_images:
        raise ValueError("no calibration images given")
    settings = settings or settings_for(entry.name)
    source = store.source_path(entry, mirror)
    card = store.source_card(entry, mirror)
    pixels = np.stack(
        list(calibration_pixels(calibration_images, entry.input_size, entry.resize_shorter))
    ).astype(np.float32)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".quant-", dir=out_path.parent) as tmp:
        # Write next to the target only when complete, so a crash leaves no half model.
        partial, folded = Path(tmp) / out_path.name, Path(tmp) / "folded.onnx"
        from edge_sdk.build.builder import no_progress  # not at the top: builder imports us

        steps = progress or no_progress
        rounded = _convolutions(source) - len(settings.float_convs) if settings.weight_rounding else 0
        with steps("equalizing and rounding weights", rounded) as tick:
            _prepare_weights(entry, source, folded, pixels, settings, lambda _: tick())
        padded = Path(tmp) / "padded.onnx"
        if not _explicit_pads(folded, padded):
            padded = folded
        graph = Path(tmp) / "pixels.onnx"
        nchw = _pixel_input(padded, graph)
        with steps("calibrating", len(pixels)) as tick:
            _quantize(graph, partial, pixels, settings, nchw, tick)
        _uint8_input(partial, nchw)
        partial.replace(out_path)
    notes: dict[str, Any] = {
        "built_by": f"onnxruntime.quantization.quantize_static (QDQ, per-channel {settings.weights} weights)",
        "settings": settings.describe(),
        "calibration_images": len(calibration_images),
        "model_sha256": store.sha256_of(out_path),
    }
    if settings.weights == "int8" and not settings.reduce_range:
        # For whoever runs the file outside edge-sdk: plain onnxruntime would saturate there.
        notes["x86_without_vnni"] = "needs onnxruntime session config " + ", ".join(
            f"{key}={value}" for key, value in PRECISE_X64_SESSION_CONFIG.items()
        )
    int8_card = card.folded(precision="int8", notes=notes)
    int8_card.save(store.card_path(out_path))
    return int8_card


def build_from_folder(
    entry: ZooEntry, mirror: Path, images_dir: Path, out_path: Path, settings: OnnxQuantSettings | None = None
) -> ModelCard:
    """`build_onnx_int8` calibrated on the `calibration` split of a labelled folder."""
    from edge_sdk.build.calibration import calibration_images  # its name is a parameter above

    return build_onnx_int8(entry, mirror, out_path, calibration_images(images_dir), settings)
