#!/usr/bin/env bash
# Install edge-classify as a systemd service (run as root, from a checkout of edge-sdk):
#   sudo bash scripts/install-service.sh                 # venv, user, unit, config, model; start it
#   sudo bash scripts/install-service.sh --no-start      # everything but starting the service
#   sudo bash scripts/install-service.sh --dry-run       # print what would be done
# Options:
#   --prefix DIR              where the virtual environment goes (default /opt/edge-sdk)
#   --model NAME              zoo model to install (default squeezenet1.1)
#   --model-home DIR          model cache to copy the built model from (default: $EDGE_SDK_HOME,
#                             else the invoking user's ~/.cache/edge-sdk)
#   --mirror DIR              build the model from the sources in DIR if no built one is found
#                             (needs the 'build' extra, i.e. TensorFlow: better done on a PC)
#   --system-site-packages    let the venv see Debian's python3-picamera2 (Raspberry Pi cameras)
# Safe to run again: it never overwrites /etc/edge-sdk/config.toml or the password file.
# docs/service.md explains the result.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

PREFIX=/opt/edge-sdk
MODEL=squeezenet1.1
MODEL_HOME=""
MIRROR=""
START=1
DRY=0
VENV_FLAGS=""
USER_NAME=edge-sdk
CONF_DIR=/etc/edge-sdk
STATE_DIR=/var/lib/edge-sdk
UNIT_DIR=/etc/systemd/system

while [[ $# -gt 0 ]]; do
  case "$1" in
    --prefix) PREFIX=$2; shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    --model-home) MODEL_HOME=$2; shift 2 ;;
    --mirror) MIRROR=$2; shift 2 ;;
    --system-site-packages) VENV_FLAGS="--system-site-packages"; shift ;;
    --no-start) START=0; shift ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "install-service.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

run() {
  echo "+ $*"
  if [[ $DRY -eq 0 ]]; then "$@"; fi
}

if [[ $DRY -eq 0 && $(id -u) -ne 0 ]]; then
  echo "install-service.sh: run as root (sudo bash $0)" >&2
  exit 1
fi

VENV=$PREFIX/venv
BIN=$VENV/bin/edge-classify

# 1. The service user: a system account, no login, in the video group for the cameras.
if ! id "$USER_NAME" >/dev/null 2>&1; then
  run useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
      --shell /usr/sbin/nologin --comment "edge-sdk classifier service" "$USER_NAME"
fi
for group in video render; do
  if getent group "$group" >/dev/null; then run usermod -aG "$group" "$USER_NAME"; fi
done

# 2. The virtual environment with edge-sdk and the web view's extra.
if [[ ! -x $VENV/bin/python ]]; then
  run python3 -m venv $VENV_FLAGS "$VENV"
fi
run "$VENV/bin/python" -m pip install -q --upgrade pip
run "$VENV/bin/python" -m pip install -q "$REPO[web]"

# 3. Configuration: the example config and an empty password file, never overwritten.
run install -d -m 0755 "$CONF_DIR"
if [[ ! -e $CONF_DIR/config.toml ]]; then
  run install -m 0644 systemd/config.example.toml "$CONF_DIR/config.toml"
  # The service keeps what a stop could not send to the broker in its state folder, for the
  # next start (docs/mqtt.md); the example leaves the spool off, as the library's default is.
  run sed -i "s|^spool = \"\"|spool = \"$STATE_DIR/mqtt-spool.jsonl\"|" "$CONF_DIR/config.toml"
fi
if [[ ! -e $CONF_DIR/mqtt-password ]]; then
  # The unit's LoadCredential= needs the file; write the password on its first line.
  run install -m 0600 -o root -g root /dev/null "$CONF_DIR/mqtt-password"
fi

# 4. The model: copied from a cache where it was built, or built here.
run install -d -m 0750 -o "$USER_NAME" -g "$USER_NAME" "$STATE_DIR" "$STATE_DIR/models"
if [[ -z $MODEL_HOME ]]; then
  if [[ -n ${EDGE_SDK_HOME:-} ]]; then
    MODEL_HOME=$EDGE_SDK_HOME
  else
    MODEL_HOME=$(getent passwd "${SUDO_USER:-root}" | cut -d: -f6)/.cache/edge-sdk
  fi
fi
BUILT=$MODEL_HOME/models/$MODEL.int8.tflite
if [[ -f $BUILT ]]; then
  run install -m 0640 -o "$USER_NAME" -g "$USER_NAME" "$BUILT" "${BUILT%.tflite}.json" \
      "$STATE_DIR/models/"
elif [[ -n $MIRROR ]]; then
  run env EDGE_SDK_HOME="$STATE_DIR" "$BIN" models build "$MODEL" --mirror "$MIRROR"
  run chown -R "$USER_NAME:$USER_NAME" "$STATE_DIR"
else
  echo "note: no built $MODEL in $MODEL_HOME; build it on a PC (edge-classify models build $MODEL)" \
       "and rerun with --model-home, or rerun with --mirror DIR" >&2
fi

# 5. The unit, pointing at this venv.
run install -d "$UNIT_DIR"
if [[ $DRY -eq 0 ]]; then
  sed "s#/opt/edge-sdk/venv/bin/edge-classify#$BIN#" systemd/edge-classify.service \
      > "$UNIT_DIR/edge-classify.service"
  chmod 0644 "$UNIT_DIR/edge-classify.service"
else
  echo "+ install systemd/edge-classify.service $UNIT_DIR/edge-classify.service (ExecStart=$BIN)"
fi

# 6. Check, then start.
run "$BIN" check-config "$CONF_DIR/config.toml"
if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
  run systemctl daemon-reload
  if [[ $START -eq 1 ]]; then
    run systemctl enable --now edge-classify.service
  else
    run systemctl enable edge-classify.service
  fi
else
  echo "note: systemd is not running here; start the unit on the device with" \
       "'systemctl enable --now edge-classify'" >&2
fi
echo "checking the machine as the service user (edge-classify doctor):"
if [[ $DRY -eq 0 ]]; then
  if command -v systemd-run >/dev/null && [[ -d /run/systemd/system ]]; then
    # As the unit runs: its user and groups, and the MQTT password as a systemd credential
    # (the file itself is root's, mode 0600, so the user alone could not read it).
    systemd-run --quiet --pipe --wait --collect -p User="$USER_NAME" -p SupplementaryGroups=video \
        -p LoadCredential=mqtt-password:"$CONF_DIR/mqtt-password" -E EDGE_SDK_HOME="$STATE_DIR" \
        "$BIN" doctor --config "$CONF_DIR/config.toml" --runs 3 || true
  elif command -v runuser >/dev/null; then
    runuser -u "$USER_NAME" -- env EDGE_SDK_HOME="$STATE_DIR" "$BIN" doctor \
        --config "$CONF_DIR/config.toml" --runs 3 || true
  fi
fi
echo "done: edit $CONF_DIR/config.toml, then 'systemctl restart edge-classify';" \
     "logs: journalctl -u edge-classify -f"
