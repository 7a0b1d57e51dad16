#!/usr/bin/env bash
# Text classification end to end: generated topic sentences -> tailguard data ingest ->
# tailguard train (MiniLM encoder fine-tuned across 2 workers) -> registered artifact
# "minilm-topics" -> served (2 replicas) -> one inference.
# Run from the repository root:
#   bash examples/minilm_classifier/run.sh                  # local worker processes
#   bash examples/minilm_classifier/run.sh --ray ADDRESS    # on a Ray cluster: ranks and
#                                                           # replicas are Ray actors
# (ADDRESS: 'auto', HOST:PORT; examples/minilm_classifier/ray_cluster.py starts a 2-node one
# on this machine.) Further arguments go to `tailguard train`.
set -euo pipefail
BIN=${BIN:-.venv/bin}
DATA=.tailguard/examples/minilm
PORT=${PORT:-8011}
ENGINE=()
BACKEND=""
if [[ "${1:-}" == "--ray" ]]; then
  ENGINE=(--engine ray --ray-address "$2")
  BACKEND="backend: ray
ray_address: $2"
  shift 2
fi
"$BIN/python" examples/minilm_classifier/prepare.py --out "$DATA"
"$BIN/tailguard" data ingest "$DATA/train.jsonl" --out "$DATA/train"
"$BIN/tailguard" data ingest "$DATA/test.jsonl" --out "$DATA/test"
"$BIN/tailguard" data check "$DATA/train" --against "$DATA/test" \
  --rules examples/minilm_classifier/checks.yaml   # report in $DATA/train/checks/
"$BIN/tailguard" train examples/minilm_classifier/job.yaml ${ENGINE[@]+"${ENGINE[@]}"} "$@"

cat > "$DATA/serve.yaml" <<YAML
port: $PORT
$BACKEND
deployments:
  - {name: topics, artifact: minilm-topics, replicas: 2}
YAML
"$BIN/tailguard" serve --config "$DATA/serve.yaml" &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT
"$BIN/python" - "$PORT" <<'PY'
import json, sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}"
deadline = time.monotonic() + 120
while True:
    try:
        if urllib.request.urlopen(url + "/v2/health/ready", timeout=2).status == 200:
            break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit("server not ready within 120 s")
    time.sleep(0.2)
body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1],
                    "data": ["the central bank raised interest rates again"]}]}
req = urllib.request.Request(url + "/v2/models/topics/infer", json.dumps(body).encode(),
                             {"content-type": "application/json"})
print(json.loads(urllib.request.urlopen(req, timeout=30).read())["outputs"])
PY
