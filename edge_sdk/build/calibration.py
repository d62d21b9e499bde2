"""Calibration images: which files, and the exact pixels inference will see.

No TensorFlow here: the ONNX int8 builder uses it too.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_sdk.errors import ModelError
from edge_sdk.preprocess import read_image, resize_crop

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def calibration_images(images_dir: Path) -> list[Path]:
    """Return the calibration images of a folder, sorted by file name.

    With a ``labels.csv`` that has a ``split`` column (the ImageNet sample's layout), only the
    rows whose split is ``calibration`` are taken, so evaluation images never calibrate. Without
    one, every image file in the folder is taken.

    Raises:
        ModelError: the folder is missing, a listed file is missing, or there are no images.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise ModelError(
            f"calibration image folder {images_dir} does not exist; pass --images DIR "
            "(e.g. the imagenet-sample folder with its labels.csv)"
        )
    labels = images_dir / "labels.csv"
    if labels.is_file():
        with labels.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and "split" in rows[0]:
            paths = sorted(images_dir / r["filename"] for r in rows if r["split"] == "calibration")
        else:
            paths = sorted(images_dir / r["filename"] for r in rows if r.get("filename"))
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise ModelError(
                f"{labels} lists {len(missing)} missing files (first: {missing[0]}); fix the folder"
            )
    else:
        paths = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ModelError(f"no calibration images in {images_dir}; give a folder of JPEG/PNG photos")
    return paths


def file_list_digest(paths: list[Path]) -> str:
    """Return a sha256 over the names and contents of `paths` (for the build key)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def calibration_pixels(
    paths: list[Path], input_size: tuple[int, int], resize_shorter: int
) -> Iterator[npt.NDArray[np.uint8]]:
    """Yield each image as the BGR uint8 crop a folded model receives at inference."""
    for path in paths:
        yield resize_crop(read_image(path), input_size, resize_shorter)
