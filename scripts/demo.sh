#!/usr/bin/env bash
# The main job in one command, on a machine that may have no camera: build the int8 SqueezeNet
# from the reference weights (once; cached), make a 1280x720 MJPEG clip of real photos with
# ffmpeg (once), and classify it live with edge-classify. Extra arguments go to edge-classify:
#   bash scripts/demo.sh                      # JSON lines on stdout, a summary table at the end
#   bash scripts/demo.sh --web 127.0.0.1:8080 --max-frames 100000   # watch it in a browser
# Needs `bash scripts/setup.sh` first and the shared/ folder beside the repo (or EDGE_SDK_SHARED).
set -euo pipefail
cd "$(dirname "$0")/.."
export EDGE_SDK_SHARED=${EDGE_SDK_SHARED:-$(cd .. && pwd)/shared}
export EDGE_SDK_MODEL_MIRROR=${EDGE_SDK_MODEL_MIRROR:-$EDGE_SDK_SHARED/models}
HOME_DIR=${EDGE_SDK_HOME:-$HOME/.cache/edge-sdk}
CLIP=$HOME_DIR/demo/photos-720p.avi
[[ -x .venv/bin/edge-classify ]] || { echo "demo.sh: run 'bash scripts/setup.sh' first" >&2; exit 2; }

# Its report and the clip's go to stderr: stdout is the JSON lines alone (demo.sh | jq works).
.venv/bin/edge-classify models build squeezenet1.1 --images "$EDGE_SDK_SHARED/data/imagenet-sample" >&2
if [[ ! -s $CLIP ]]; then
  mkdir -p "$(dirname "$CLIP")"
  # 20 s at 30 fps, each photo held for a second, so the label visibly follows the picture.
  PYTHONPATH=tests .venv/bin/python -c 'import sys; from support.media import make_video
make_video(sys.argv[1], frames=600, fps=30, photos=20, stamp=False, hold=30)' "$CLIP"
  echo "made $CLIP" >&2
fi
exec .venv/bin/edge-classify --source "$CLIP" --no-display --json --max-frames 300 "$@"
