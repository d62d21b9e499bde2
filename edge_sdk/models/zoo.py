"""The named models edge-sdk knows: where their source files come from and how to feed them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: torchvision-style normalization expressed in 0..255 pixel units, RGB order.
_TORCH_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
_TORCH_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
#: Caffe SqueezeNet: BGR minus mean, no scaling.
_CAFFE_MEAN = (104.0, 117.0, 123.0)


@dataclass(frozen=True)
class ZooEntry:
    """A named model.

    Attributes:
        name: The zoo name users type.
        architecture: "squeezenet1.1", "squeezenet1.0" or "mobilenet" (pre-built, not rebuilt).
        source: File name of the source model in the mirror folder.
        sha256: Checksum of that file; a mismatch is refused.
        url: Public address to download the source into a mirror by hand.
        labels_file: File name of the label list in the mirror folder.
        label_offset: Leading output classes not in the labels file's class list.
        input_size: (height, width).
        resize_shorter: Shorter side before the centre crop (0: stretch).
        colour / mean / std: The source model's input normalization (0..255 units).
        description: One line for `models list`.
    """

    name: str
    architecture: Literal["squeezenet1.1", "squeezenet1.0", "mobilenet"]
    source: str
    sha256: str
    url: str
    labels_file: str
    input_size: tuple[int, int]
    resize_shorter: int
    colour: Literal["BGR", "RGB"]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    description: str
    label_offset: int = 0

    @property
    def prebuilt(self) -> bool:
        """True for models shipped already quantized (nothing to build, only to check)."""
        return self.source.endswith(".tflite")


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry(
            name="squeezenet1.1",
            architecture="squeezenet1.1",
            source="squeezenet1.1.onnx",
            sha256="40ac7bc90c9333745e2b5567b898f5882aa696780b6172c705e4534f5a53840f",
            url="https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth (export to ONNX)",
            labels_file="imagenet_classes.txt",
            input_size=(224, 224),
            resize_shorter=256,
            colour="RGB",
            mean=_TORCH_MEAN,
            std=_TORCH_STD,
            description="SqueezeNet 1.1, torchvision weights (default)",
        ),
        ZooEntry(
            name="squeezenet1.1-caffe",
            architecture="squeezenet1.1",
            source="squeezenet1.1-caffe.onnx",
            sha256="83062d4e9b81c9dffaa7f99a4b47dcfc5a29315ea782a6a73bcdaebd6f4fd9a7",
            url="https://github.com/forresti/SqueezeNet/tree/master/SqueezeNet_v1.1 (export to ONNX)",
            labels_file="imagenet_classes.txt",
            input_size=(227, 227),
            resize_shorter=256,
            colour="BGR",
            mean=_CAFFE_MEAN,
            std=(1.0, 1.0, 1.0),
            description="SqueezeNet 1.1, original Caffe weights",
        ),
        ZooEntry(
            name="squeezenet1.0-dc",
            architecture="squeezenet1.0",
            source="squeezenet1.0-deepcompression.onnx",
            sha256="74def73e0d4f5ebd7dff468f285356938a046f9a3e1750888070c1adca679d3d",
            url="https://github.com/songhan/SqueezeNet-Deep-Compression (export to ONNX)",
            labels_file="imagenet_classes.txt",
            input_size=(227, 227),
            resize_shorter=256,
            colour="BGR",
            mean=_CAFFE_MEAN,
            std=(1.0, 1.0, 1.0),
            description="SqueezeNet 1.0 after Deep Compression (sparse, codebook weights)",
        ),
        ZooEntry(
            name="mobilenet-v2-quant",
            architecture="mobilenet",
            source="mobilenet_v2_1.0_224_quant.tflite",
            sha256="7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776",
            url="https://github.com/google-coral/test_data/raw/master/mobilenet_v2_1.0_224_quant.tflite",
            labels_file="imagenet_labels_1001.txt",
            label_offset=1,
            input_size=(224, 224),
            resize_shorter=256,
            colour="RGB",
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            description="MobileNet v2 1.0 224, pre-quantized uint8 (1001 classes)",
        ),
        ZooEntry(
            name="mobilenet-v1-quant",
            architecture="mobilenet",
            source="mobilenet_v1_0.75_192_quant.tflite",
            sha256="41daeb22fdcf947e0e5ec32373aa9df7c31f3ef45dbd0ef7b5940fbce3c20f6a",
            url="https://github.com/google-coral/test_data/raw/master/mobilenet_v1_0.75_192_quant.tflite",
            labels_file="imagenet_labels_1001.txt",
            label_offset=1,
            input_size=(192, 192),
            resize_shorter=219,
            colour="RGB",
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            description="MobileNet v1 0.75 192, pre-quantized uint8 (1001 classes)",
        ),
    )
}

DEFAULT_MODEL = "squeezenet1.1"
