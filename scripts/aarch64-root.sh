#!/usr/bin/env bash
# An aarch64 Python with this project's frame-path packages, for the tests that run the models on
# the boards' CPUs under qemu-user (tests/test_aarch64.py): Debian's arm64 python3.11 (debootstrap,
# only unpacked: nothing of it runs natively) and the aarch64 wheels of ai-edge-litert, numpy,
# OpenCV and onnxruntime at the versions scripts/constraints.txt pins, unpacked beside it.
# edge_sdk itself comes from the checkout (pure Python). Safe to run again: it rebuilds only
# when the pinned versions change. Usage: scripts/aarch64-root.sh [DIR]
# (default: $EDGE_SDK_HOME/aarch64, else ~/.cache/edge-sdk/aarch64).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-${EDGE_SDK_HOME:-$HOME/.cache/edge-sdk}/aarch64}
# Debian 12 has Python 3.11, the version the wheels below are for; they need glibc >= 2.28.
SUITE=bookworm
MIRROR=${EDGE_SDK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PY=.venv/bin/python
[[ -x $PY ]] || PY=python3

pin() { grep -i "^$1==" scripts/constraints.txt | head -1; }
opencv=$(pin opencv-python); opencv=opencv-python-headless==${opencv#*==}  # no GUI libraries
WHEELS=("$(pin ai-edge-litert)" "$(pin numpy)" "$opencv" "$(pin onnxruntime)")
STAMP="$SUITE ${WHEELS[*]}"
if [[ -f $DIR/READY && $(cat "$DIR/READY") == "$STAMP" ]]; then
  echo "aarch64 root up to date: $DIR"
  exit 0
fi
for tool in debootstrap dpkg qemu-aarch64; do
  command -v $tool >/dev/null || { echo "aarch64 root: no $tool (apt-get install debootstrap qemu-user)" >&2; exit 1; }
done

rm -rf "$DIR"
mkdir -p "$DIR"
# --foreign only downloads and unpacks (its second stage would run arm64 programs); the
# packages asked for beyond the base set are only downloaded, and unpacked below.
debootstrap --arch=arm64 --foreign --variant=minbase \
  --include=python3-minimal,libpython3.11-stdlib "$SUITE" "$DIR/root" "$MIRROR" >"$DIR/debootstrap.log"
for deb in "$DIR"/root/var/cache/apt/archives/*.deb; do
  case $(basename "$deb") in
    *python3*|libexpat1_*|libffi8_*|libssl3_*|libsqlite3-0_*|libbz2-1.0_*|liblzma5_*|libstdc++6_*)
      dpkg -x "$deb" "$DIR/unpacked" ;;
  esac
done
# The root is merged-/usr (/lib is a link to usr/lib): copy what the packages put in /lib there.
if [[ -d $DIR/unpacked/lib ]]; then
  cp -a "$DIR/unpacked/lib/." "$DIR/root/usr/lib/"
  rm -rf "$DIR/unpacked/lib"
fi
cp -a "$DIR/unpacked/." "$DIR/root/"
rm -rf "$DIR/unpacked" "$DIR"/root/var/cache/apt/archives/*.deb

platforms=()
for tag in 2_17 2_27 2_28; do platforms+=(--platform "manylinux_${tag}_aarch64"); done
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
  "${platforms[@]}" -d "$DIR/wheels" "${WHEELS[@]}"
mkdir -p "$DIR/site"
for wheel in "$DIR"/wheels/*.whl; do
  $PY -m zipfile -e "$wheel" "$DIR/site"
done
rm -rf "$DIR/wheels"
echo "$STAMP" >"$DIR/READY"
echo "aarch64 root ready: $DIR ($(du -sh "$DIR" | cut -f1))"
