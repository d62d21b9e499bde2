"""Real video files for tests and benchmarks, made with ffmpeg from real photos.

Frames are the ImageNet sample photos (../shared/data/imagenet-sample), centre-cropped to the
requested size, each with its frame number stamped in the top rows (edge_sdk.sources.synthetic.
stamp_number; read it back with read_number). They are piped to ffmpeg as raw BGR and encoded
as MJPEG in AVI (what USB webcams send) or H.264 in MP4.

Use from a test (pytest puts tests/ on sys.path):   from support.media import make_video
Use from a script under scripts/:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from support.media import make_video
Never commit the files this makes: write them to a temporary or cache folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edge_sdk.sources.synthetic import stamp_number

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"

#: The shared photo folder (EDGE_SDK_SHARED overrides where ../shared is).
IMAGENET = (
    Path(os.environ.get("EDGE_SDK_SHARED", Path(__file__).resolve().parents[3] / "shared"))
    / "data"
    / "imagenet-sample"
)

_CODECS = {
    # -q:v 3 is close to what webcams send: about 100-150 KB per 720p frame.
    "mjpeg": ["-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj420p"],
    "h264": ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"],
}


def photo_paths(folder: Path = IMAGENET, limit: int = 60) -> list[Path]:
    """The first `limit` photos of the folder, by name."""
    paths = sorted(folder.glob("*.jpg"))[:limit]
    if not paths:
        raise FileNotFoundError(f"no photos in {folder}; set EDGE_SDK_SHARED to the shared/ folder")
    return paths


def _read_photo(path: Path) -> np.ndarray:
    """Read a photo as BGR (cv2.imread gives None for a file it cannot read)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"cannot read {path}"
    return image


def fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale `image` to cover `size` (width, height) and centre-crop it to exactly that."""
    width, height = size
    scale = max(width / image.shape[1], height / image.shape[0])
    resized = cv2.resize(
        image,
        (max(width, round(image.shape[1] * scale)), max(height, round(image.shape[0] * scale))),
        interpolation=cv2.INTER_LINEAR,
    )
    top = (resized.shape[0] - height) // 2
    left = (resized.shape[1] - width) // 2
    return np.ascontiguousarray(resized[top : top + height, left : left + width])


def photo_frames(
    size: tuple[int, int], count: int, *, photos: int = 30, stamp: bool = True, hold: int = 1
) -> Iterator[np.ndarray]:
    """Yield `count` BGR frames of `size`, cycling through `photos` real photos, each shown
    for `hold` frames in a row."""
    if hold < 1:
        raise ValueError(f"hold must be >= 1, got {hold}")
    pictures = [fit(_read_photo(p), size) for p in photo_paths(limit=photos)]
    for n in range(count):
        frame = pictures[n // hold % len(pictures)].copy()
        if stamp:
            stamp_number(frame, n)
        yield frame


def make_video(
    path: str | os.PathLike[str],
    *,
    codec: str = "mjpeg",
    size: tuple[int, int] = (1280, 720),
    frames: int = 60,
    fps: float = 30.0,
    photos: int = 30,
    stamp: bool = True,
    hold: int = 1,
) -> Path:
    """Write a video of real photos with ffmpeg and return its path.

    Args:
        path: Output file (.avi for MJPEG, .mp4 for H.264 is conventional).
        codec: "mjpeg" or "h264".
        size: (width, height).
        frames: Number of frames.
        fps: Frame rate written into the container.
        photos: How many different photos to cycle through.
        stamp: Stamp each frame's number into its top rows.
        hold: Frames in a row that show the same photo.
    """
    if codec not in _CODECS:
        raise ValueError(f"codec must be one of {sorted(_CODECS)}")
    out = Path(path)
    cmd = [
        FFMPEG, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{size[0]}x{size[1]}", "-r", f"{fps:g}",
        "-i", "pipe:0", *_CODECS[codec], "-frames:v", str(frames), str(out),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        for frame in photo_frames(size, frames, photos=photos, stamp=stamp, hold=hold):
            proc.stdin.write(frame.tobytes())
    finally:
        _, err = proc.communicate(timeout=120)  # closes stdin (closing it first breaks its flush)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {err.decode(errors='replace')}")
    return out


def make_jpeg(
    path: str | os.PathLike[str], size: tuple[int, int] = (1280, 720), quality: int = 90
) -> Path:
    """Write one real photo, fitted to `size`, as a JPEG file; return its path."""
    frame = next(photo_frames(size, 1, photos=1, stamp=False))
    out = Path(path)
    if not cv2.imwrite(str(out), frame, [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise RuntimeError(f"cannot write {out}")
    return out
