"""ModelCard: everything a model needs besides its weights, stored as a JSON sidecar."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edge_sdk.errors import ModelError

CARD_VERSION = 1

OutputKind = Literal["probabilities", "logits", "logit_map"]
"""`logit_map`: an N x H x W x C (or N x C x H x W) map of per-position logits that the Classifier
averages over space; the quantized SqueezeNets end this way so the average is taken in float,
which avoids the ties a quantized 1000-class output has (see docs/models.md)."""


@dataclass(frozen=True)
class ModelCard:
    """What a model expects and produces.

    Pixel convention: `mean` and `std` are in 0..255 pixel units and in the model's `colour`
    order; the model input is `(pixel - mean) / std`. A model with preprocessing folded in has
    mean 0, std 1, colour "BGR" and a uint8 input: camera pixels go in as they come.

    Attributes:
        name: Zoo name or file stem.
        labels: Class names, without the offset classes.
        label_offset: Number of leading output classes that are not in `labels` (MobileNet's
            "background" is 1).
        input_size: (height, width) the model takes.
        resize_shorter: Resize the shorter image side to this, then centre-crop `input_size`;
            0 stretches the whole image to `input_size`.
        colour: Channel order the model wants.
        mean: Per-channel mean, in `colour` order.
        std: Per-channel std, in `colour` order.
        layout: Image tensor layout of the model input.
        output_kind: What the output holds.
        precision: "int8", "float" (or "uint8" for the pre-quantized MobileNets).
        source_sha256: Checksum of the file the model was built from.
        notes: Free-form provenance for people (build settings, accuracy measured).
    """

    name: str
    labels: tuple[str, ...]
    input_size: tuple[int, int]
    label_offset: int = 0
    resize_shorter: int = 0
    colour: Literal["BGR", "RGB"] = "BGR"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    layout: Literal["NHWC", "NCHW"] = "NHWC"
    output_kind: OutputKind = "probabilities"
    precision: str = "float"
    source_sha256: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def num_outputs(self) -> int:
        """Number of output classes the model's tensor must have."""
        return len(self.labels) + self.label_offset

    @property
    def raw_pixels(self) -> bool:
        """True when the model takes 0..255 pixels as they are (mean 0, std 1).

        A quantized model with raw-pixel input gets the pixels as its integer input unchanged:
        its input quantization already maps them to what its first layer expects.
        """
        return all(m == 0.0 for m in self.mean) and all(s == 1.0 for s in self.std)

    def folded(self, **changes: Any) -> ModelCard:
        """This card for a model built from it with the preprocessing folded in.

        The built model takes BGR uint8 camera pixels as they come, NHWC: what the builders
        make of a source whose normalization and channel order went into its first convolution.
        """
        return dataclasses.replace(
            self, colour="BGR", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), layout="NHWC", **changes
        )

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["card_version"] = CARD_VERSION
        return json.dumps(data, indent=1)

    def save(self, path: Path) -> None:
        """Write the card to `path` (by convention the model path with suffix .json)."""
        path.write_text(self.to_json())

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "model card") -> ModelCard:
        data = dict(data)
        data.pop("card_version", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"{origin}: unknown keys {unknown}; accepted: {sorted(known)}")
        try:
            for key in ("labels", "input_size", "mean", "std"):
                if key in data:
                    data[key] = tuple(data[key])
            return cls(**data)
        except TypeError as exc:
            raise ModelError(f"{origin}: {exc}; rebuild it with 'edge-classify models build'") from exc

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        """Read a JSON card.

        Raises:
            ModelError: missing or unreadable file.
        """
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelError(
                f"no model card at {path}; write one next to the model "
                "(see 'edge-classify models info squeezenet1.1 --card' for an example)"
            ) from None
        except (OSError, ValueError) as exc:
            raise ModelError(f"model card {path} is not valid JSON ({exc}); fix or rebuild it") from None
        if not isinstance(data, dict):
            raise ModelError(f"model card {path} must hold a JSON object")
        return cls.from_dict(data, origin=f"model card {path}")
