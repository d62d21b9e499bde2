#!/usr/bin/env bash
# One-command setup for development and tests: system packages, a virtual environment in .venv,
# edge-sdk installed editable with every extra. Safe to run again.
#   bash scripts/setup.sh            # everything (needs root or sudo for apt)
#   bash scripts/setup.sh --no-apt   # only the Python side
#   bash scripts/setup.sh --latest   # newest releases instead of scripts/constraints.txt
set -euo pipefail
cd "$(dirname "$0")/.."

# ffmpeg: test videos; mosquitto: the MQTT broker the tests start; chromium: the web view's
# end-to-end test; systemd: systemd-analyze verify of the unit; iproute2: a second host in a network
# namespace, whose link a web test cuts (tests/support/netns.py); python3-gi, gir1.2-gst-rtsp-server-1.0
# and the GStreamer plugins (base: appsrc, videoconvert; good: jpegenc and the RTP payloaders;
# ugly: x264enc): the RTSP camera the tests start (tests/support/rtsp_server.py, run by the system
# python3 because the venv has no gi); qemu-user: an x86 CPU without VNNI and the boards' aarch64
# CPUs, emulated, for the int8 models' answers there (tests/test_no_vnni.py, tests/test_aarch64.py);
# debootstrap: the aarch64 Python those run (scripts/aarch64-root.sh).
APT_PACKAGES="ffmpeg mosquitto chromium systemd xvfb iproute2 python3-gi gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly qemu-user debootstrap"

APT=1
CONSTRAINTS=(-c scripts/constraints.txt)
for arg in "$@"; do
  case "$arg" in
    --no-apt) APT=0 ;;
    --latest) CONSTRAINTS=() ;;
    *) echo "setup.sh: unknown option $arg (use --no-apt, --latest)" >&2; exit 2 ;;
  esac
done

if [[ $APT == 1 ]]; then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $APT_PACKAGES
  # The tests start their own broker; the packaged one need not run.
  $SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true
fi

PYTHON=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "${CONSTRAINTS[@]}" -e '.[onnx,build,web,test]'
# The emulated aarch64 runs need root (a mount namespace each), so only root gets their Python.
if [[ $(id -u) -eq 0 ]]; then
  bash scripts/aarch64-root.sh || echo "setup: no aarch64 root, so tests/test_aarch64.py will skip" >&2
fi
echo "setup done: activate with 'source .venv/bin/activate'"
