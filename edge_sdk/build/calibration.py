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

from edge_sdk.errors import ModelError, file_problem
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
        try:
            # utf-8-sig: Excel's "CSV UTF-8" starts the file with a byte-order mark.
            with labels.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                columns = [c.strip() for c in reader.fieldnames or []]
                rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise ModelError(f"cannot read {labels} ({exc}); write it as UTF-8 CSV") from None
        if "filename" not in columns:
            raise ModelError(f"{labels} has no filename column; its header must start with "
                             "filename,class_index")
        if "split" in columns:
            paths = sorted(images_dir / r["filename"] for r in rows if r["split"] == "calibration")
            if not paths:
                splits = ", ".join(sorted({r["split"] for r in rows})) or "none"
                raise ModelError(f"{labels} has no rows of split 'calibration' (it has: {splits}); "
                                 "mark the photos to calibrate on")
        else:
            paths = sorted(images_dir / r["filename"] for r in rows if r.get("filename"))
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise ModelError(
                f"{labels} lists {len(missing)} missing files (first: {missing[0]}); fix the folder"
            )
    else:
        try:
            # Files only: a folder named x.jpg, or a dangling link, is no image.
            paths = sorted(p for p in images_dir.iterdir()
                           if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        except OSError as exc:
            raise ModelError(f"cannot list {images_dir}: {file_problem(exc)}") from None
    if not paths:
        raise ModelError(f"no calibration images in {images_dir}; give a folder of JPEG/PNG photos "
                         "(or one with a labels.csv naming them)")
    return paths


def file_list_digest(paths: list[Path]) -> str:
    """Return a sha256 over the names and contents of `paths` (for the build key)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        try:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError as exc:
            raise ModelError(f"cannot read the calibration image {path}: {file_problem(exc)}") from None
    return digest.hexdigest()


def calibration_pixels(
    paths: list[Path], input_size: tuple[int, int], resize_shorter: int
) -> Iterator[npt.NDArray[np.uint8]]:
    """Yield each image as the BGR uint8 crop a folded model receives at inference."""
    for path in paths:
        yield resize_crop(read_image(path), input_size, resize_shorter)
