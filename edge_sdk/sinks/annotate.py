"""Draw a prediction onto a frame: top-k labels with score bars, and a status line.

Shared by the overlay window, the video file sink and the web view, so they all look the same.
Sizes scale with the image height, so a 320x240 stream and a 1080p camera are both readable.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from edge_sdk.types import Image, Prediction

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT = (255, 255, 255)
_BAR = (60, 180, 75)  # BGR green


def status_line(prediction: Prediction, fps: float | None = None) -> str:
    """The one-line summary drawn at the bottom: rate, latency and frame number (the file's
    name instead, for an image from a folder)."""
    parts = []
    if fps is not None:
        parts.append(f"{fps:.1f} fps")
    t = prediction.timings
    parts.append(f"infer {t.inference:.1f} ms")
    parts.append(f"age {t.age:.0f} ms")
    parts.append(os.path.basename(prediction.file) if prediction.file else f"#{prediction.frame_index}")
    return "  |  ".join(parts)


def annotate(
    image: Image, prediction: Prediction, *, fps: float | None = None, copy: bool = True
) -> Image:
    """Return `image` with `prediction` drawn on it.

    Args:
        image: H x W x 3 uint8 BGR frame (not modified unless ``copy=False``).
        prediction: What to draw: each of its top labels with its score, best first.
        fps: Predictions per second to show in the status line (left out when None).
        copy: Draw on a copy (the frame may be shared with other sinks).

    Raises:
        ValueError: `image` is not an H x W x 3 uint8 array.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 BGR image, got {image.dtype} {image.shape}")
    out = image.copy() if copy else image
    height, width = out.shape[:2]
    scale = max(0.35, min(1.2, height / 720 * 0.7))
    thickness = 1 if scale < 0.6 else 2
    line_h = int(32 * scale) + 4
    pad = max(4, int(8 * scale))
    lines = [f"{lb.score * 100:5.1f}%  {lb.name}" for lb in prediction.top] or ["(below threshold)"]
    text_w = max(cv2.getTextSize(s, _FONT, scale, thickness)[0][0] for s in lines)
    panel_w = min(width, text_w + 2 * pad)
    panel_h = min(height, len(lines) * line_h + pad)
    _shade(out, 0, 0, panel_w, panel_h)
    for i, (text, label) in enumerate(zip(lines, prediction.top or (None,), strict=True)):
        y = pad + i * line_h
        if label is not None:
            bar_w = int((panel_w - 2 * pad) * max(0.0, min(1.0, label.score)))
            cv2.rectangle(out, (pad, y + line_h - 6), (pad + bar_w, y + line_h - 3), _BAR, -1)
        cv2.putText(out, text, (pad, y + line_h - 10), _FONT, scale, _TEXT, thickness, cv2.LINE_AA)
    status = status_line(prediction, fps)
    (sw, sh), base = cv2.getTextSize(status, _FONT, scale * 0.8, 1)
    top = max(0, height - sh - base - 2 * pad)
    _shade(out, 0, top, min(width, sw + 2 * pad), height)
    cv2.putText(out, status, (pad, height - base - pad), _FONT, scale * 0.8, _TEXT, 1, cv2.LINE_AA)
    return out


def _shade(image: Image, x0: int, y0: int, x1: int, y1: int) -> None:
    """Darken a rectangle in place so white text on it reads over any picture."""
    roi = image[y0:y1, x0:x1]
    if roi.size:
        roi[...] = (roi >> 2) + (roi >> 3)  # 3/8 of the original brightness, no float math
