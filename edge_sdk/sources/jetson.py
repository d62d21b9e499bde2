"""NVIDIA Jetson: recognising the board and the CSI camera's GStreamer pipeline."""

from __future__ import annotations

from pathlib import Path


def is_jetson(root: str = "/") -> bool:
    """True on an NVIDIA Jetson (L4T): it has /etc/nv_tegra_release or says so in its model."""
    base = Path(root)
    if (base / "etc/nv_tegra_release").is_file():
        return True
    try:
        model = (base / "proc/device-tree/model").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return "jetson" in model.lower() or "nvidia" in model.lower()


def nvargus_pipeline(
    sensor_id: int = 0,
    size: tuple[int, int] = (1280, 720),
    fps: float = 30.0,
    flip: int = 0,
) -> str:
    """The GStreamer pipeline that reads a Jetson CSI camera as BGR frames for OpenCV.

    nvarguscamerasrc delivers NV12 in NVMM (GPU) memory; nvvidconv converts and copies it to
    BGRx in CPU memory (and flips, method 0-7), videoconvert drops the x, and the appsink keeps
    only the newest buffer so a slow reader never sees old frames.
    """
    if sensor_id < 0 or not 0 <= flip <= 7 or fps <= 0:
        raise ValueError("need sensor_id >= 0, 0 <= flip <= 7 and fps > 0")
    width, height = size
    rate = f"{round(fps * 1000)}/1000" if fps != int(fps) else f"{int(fps)}/1"
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM),width={width},height={height},framerate={rate},format=NV12 ! "
        f"nvvidconv flip-method={flip} ! video/x-raw,width={width},height={height},format=BGRx ! "
        "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"
    )
