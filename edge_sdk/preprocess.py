"""Image preprocessing shared by inference, calibration and evaluation.

One function, used everywhere, so a quantized model is calibrated on exactly what it later sees.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge_sdk.errors import SourceError, file_problem
from edge_sdk.types import Image


def crop_box(
    height: int, width: int, resize_shorter: int, size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Return (top, left, crop_h, crop_w) in source pixels of the centre crop.

    The crop is where a `size` crop would fall after resizing the shorter side to
    `resize_shorter`; with `resize_shorter` 0 it is the whole image.
    """
    if resize_shorter <= 0:
        return 0, 0, height, width
    scale = resize_shorter / min(height, width)
    crop_h = min(height, max(1, round(size[0] / scale)))
    crop_w = min(width, max(1, round(size[1] / scale)))
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


@functools.lru_cache(maxsize=32)
def _resize_plan(
    height: int, width: int, size: tuple[int, int], resize_shorter: int
) -> tuple[slice, slice, tuple[tuple[int, int], ...], tuple[int, int] | None]:
    """Rows, columns, halving sizes and final size (cv2 (width, height) order) for one shape.

    Cached because a camera sends one shape for hours: right after an inference, when the
    interpreter has evicted this code's data from the caches, the arithmetic and the objects
    it makes cost 5-10 µs a frame here, against well under 1 µs for the cache lookup.
    """
    top, left, crop_h, crop_w = crop_box(height, width, resize_shorter, size)
    halvings = max(0, min(crop_h // size[0], crop_w // size[1]).bit_length() - 1)
    k = 1 << halvings
    top, left = top + crop_h % k // 2, left + crop_w % k // 2
    crop_h, crop_w = crop_h - crop_h % k, crop_w - crop_w % k
    steps = tuple((crop_w >> i, crop_h >> i) for i in range(1, halvings + 1))
    last = (crop_h >> halvings, crop_w >> halvings)
    final = None if last == size else (size[1], size[0])
    return slice(top, top + crop_h), slice(left, left + crop_w), steps, final


def resize_crop(image: Image, size: tuple[int, int], resize_shorter: int) -> Image:
    """Centre-crop and resize a BGR uint8 image to `size` (height, width).

    Equivalent to "resize the shorter side to `resize_shorter`, then centre-crop `size`", but it
    crops first and resizes only the crop: the same pixels with less work on a 720p frame.
    Large downscales (a 720p frame to 224: 2.8x) go in steps: INTER_AREA halvings, each the
    mean of 2 x 2 blocks (no aliasing), while the crop is at least twice the target, then
    INTER_LINEAR for the remaining factor below 2. OpenCV has a fast kernel only for the
    halving: INTER_AREA at 2.8x takes several ms per frame, at 3x or 4x even more, against
    about 0.1 ms a halving. To keep the halvings exact the crop loses at most 2^n - 1 rows and
    columns, centred. The result is C-contiguous.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 BGR image, got {image.dtype} {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"the image is empty ({image.shape[0]} x {image.shape[1]} pixels)")
    rows, cols, steps, final = _resize_plan(
        image.shape[0], image.shape[1], tuple(size), resize_shorter
    )
    # cv2 is typed as returning any numeric array; uint8 in gives uint8 out.
    roi: npt.NDArray[Any] = image[rows, cols]
    for step in steps:
        roi = cv2.resize(roi, step, interpolation=cv2.INTER_AREA)
    if final is not None:
        roi = cv2.resize(roi, final, interpolation=cv2.INTER_LINEAR)
    pixels: Image = np.ascontiguousarray(roi)
    return pixels


def read_image(path: str | os.PathLike[str]) -> Image:
    """Read an image file as BGR uint8 (grey and alpha images are converted).

    Raises:
        SourceError: the file is missing, unreadable, not a regular file, or not an image OpenCV
            can decode.
    """
    name = os.fspath(path)
    if os.path.isdir(path):
        raise SourceError(f"{name} is a folder; give image files (e.g. {os.path.join(name, '*.jpg')})")
    if not os.path.exists(path):
        raise SourceError(f"no such image file: {name}")
    if not os.path.isfile(path):  # a FIFO or a device would block or never end
        raise SourceError(f"{name} is not a regular file; give an image file")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise SourceError(f"cannot read {name}: {file_problem(exc)}") from None
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error:  # OpenCV's size limit: a header claiming over 2^30 pixels
        raise SourceError(f"{name} is larger than OpenCV decodes (over 2^30 pixels); downscale "
                          "it") from None
    if image is None:
        raise SourceError(f"{name} is not an image OpenCV can decode; give a JPEG, PNG, BMP or TIFF file")
    return np.asarray(image, dtype=np.uint8)
