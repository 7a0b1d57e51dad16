#!/usr/bin/env bash
# A fresh venv installed from the hash-locked requirements alone (pip --require-hashes, no
# resolution) imports tailguard and serves: the install the Dockerfile does, without a container.
# Too slow for the test suite (it installs torch and transformers afresh): run it after `make lock`.
#   scripts/check_lock_install.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-$(mktemp -d)/venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -m venv "$VENV"
PIP=("$VENV/bin/pip" install --quiet --require-hashes --no-deps)
# This machine keeps the torch CPU wheel in /opt/wheels; elsewhere it comes from PyTorch's index.
if [ -d /opt/wheels ]; then TORCH=(--find-links /opt/wheels); else
  TORCH=(--extra-index-url https://download.pytorch.org/whl/cpu); fi
"${PIP[@]}" -r requirements/build.lock
"${PIP[@]}" "${TORCH[@]}" -r requirements/runtime.lock
"$VENV/bin/pip" install --quiet --no-deps --no-build-isolation .
"$VENV/bin/pip" check
PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
CONFIG=$(mktemp --suffix=.yaml)
printf 'deployments:\n  - {name: echo, model: "tailguard.models.echo:Echo", max_wait_ms: 0}\n' > "$CONFIG"
cd "$(mktemp -d)"  # not the repo: the installed package must serve, not ./src
TAILGUARD_HOME=$PWD "$VENV/bin/tailguard" serve --config "$CONFIG" --port "$PORT" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do
  if curl -fs "http://127.0.0.1:$PORT/v2/health/ready" >/dev/null; then break; fi
  sleep 0.5  # a poll with a deadline (two minutes)
done
curl -fs -X POST "http://127.0.0.1:$PORT/v2/models/echo/infer" -H 'Content-Type: application/json' \
  -d '{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,2],"data":[1,2]}]}'
echo
kill -TERM $SERVER && wait $SERVER
trap - EXIT
echo "ok: the locked install imports and serves"
