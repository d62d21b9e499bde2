"""Run Python on the boards' CPUs, emulated: qemu-user's aarch64 CPU models and the aarch64
Python that scripts/aarch64-root.sh unpacks, with the real aarch64 builds of LiteRT, OpenCV,
numpy and onnxruntime, and edge_sdk from this checkout.

qemu-user emulates the instruction set only; the kernel is this machine's, so /proc/cpuinfo
describes its x86 CPU. The cpuinfo library inside LiteRT (XNNPACK) and onnxruntime parses that
file on ARM to pick its kernels, and crashes on an x86 one. So each run gets, in a mount
namespace of its own, the /proc/cpuinfo the board's kernel would show for the CPU qemu emulates
(what each CPU can do still comes from qemu, through the HWCAP bits). That file is the one
fake here: there is no ARM board on this machine.

Needs root (for the mount namespace), qemu-aarch64 and the root folder; `missing()` says why not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOT = Path(os.environ.get("EDGE_SDK_HOME") or Path.home() / ".cache" / "edge-sdk") / "aarch64"

_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
#: /proc/cpuinfo of each board CPU, as its kernel writes it (two cores are enough here).
CPUS = {
    # Raspberry Pi 4: Armv8.0, no dot product instructions.
    "cortex-a72": {"features": _FEATURES, "variant": "0x0", "part": "0xd08", "revision": "3"},
    # Raspberry Pi 5 (and the Jetson Orin's Cortex-A78AE is of its kind): Armv8.2 with dot product.
    "cortex-a76": {"features": _FEATURES + " atomics fphp asimdhp asimdrdm lrcpc dcpop asimddp",
                   "variant": "0x4", "part": "0xd0b", "revision": "1"},
}


def missing() -> str | None:
    """Why nothing can run emulated here (a skip reason), or None if it can."""
    if shutil.which("qemu-aarch64") is None:
        return "no qemu-aarch64 (apt-get install qemu-user; scripts/setup.sh)"
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return "the emulated runs need root for their own /proc/cpuinfo (a mount namespace)"
    if not (ROOT / "READY").is_file():
        return f"no aarch64 root at {ROOT}; run scripts/aarch64-root.sh (scripts/setup.sh does)"
    return None


def cpuinfo(cpu: str) -> str:
    """The /proc/cpuinfo text of `cpu` (a key of `CPUS`)."""
    spec = CPUS[cpu]
    core = (f"BogoMIPS\t: 108.00\nFeatures\t: {spec['features']}\nCPU implementer\t: 0x41\n"
            f"CPU architecture: 8\nCPU variant\t: {spec['variant']}\nCPU part\t: {spec['part']}\n"
            f"CPU revision\t: {spec['revision']}\n\n")
    return "".join(f"processor\t: {n}\n{core}" for n in range(2))


def run_python(cpu: str, argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python3.11 *argv`` on the emulated `cpu`; edge_sdk and the aarch64 packages import."""
    with tempfile.NamedTemporaryFile("w", prefix=f"cpuinfo-{cpu}-", suffix=".txt") as info:
        info.write(cpuinfo(cpu))
        info.flush()
        command = (f'mount --bind "{info.name}" /proc/cpuinfo && exec qemu-aarch64 -cpu {cpu} '
                   f'-L "{ROOT / "root"}" "{ROOT / "root/usr/bin/python3.11"}" "$@"')
        env = dict(os.environ, PYTHONPATH=f"{REPO}:{ROOT / 'site'}", PYTHONNOUSERSITE="1")
        return subprocess.run(["unshare", "-m", "sh", "-c", command, "sh", *argv], env=env,
                              capture_output=True, text=True, timeout=timeout)
