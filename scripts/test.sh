#!/usr/bin/env bash
# The project's test command: lint, type-check, build the test models (cached), run pytest.
# Extra arguments go to pytest, e.g. `scripts/test.sh -k classifier -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
export EDGE_SDK_SHARED=${EDGE_SDK_SHARED:-$(cd .. && pwd)/shared}
export EDGE_SDK_MODEL_MIRROR=${EDGE_SDK_MODEL_MIRROR:-$EDGE_SDK_SHARED/models}
PY=.venv/bin/python
[[ -x $PY ]] || PY=python3

$PY -m ruff check edge_sdk tests scripts
$PY -m mypy
$PY -m mypy --explicit-package-bases tests scripts  # with the same settings (setup.cfg)
$PY -m pytest "$@"
