#!/usr/bin/env bash
# Digits end to end: sklearn digits -> Parquet -> tailguard data ingest -> data check -> train
# (2 workers, DDP on CPU) to >= 97% held-out accuracy -> registered artifact "digits"
# -> tailguard serve (examples/digits/serve.yaml, 127.0.0.1:8010) -> V2 infer on a few test rows.
# Run from the repository root: bash examples/digits/run.sh
set -euo pipefail
BIN=${BIN:-.venv/bin}
DATA=.tailguard/examples/digits
"$BIN/python" examples/digits/prepare.py --out "$DATA"
"$BIN/tailguard" data ingest "$DATA/train.parquet" --out "$DATA/train"
"$BIN/tailguard" data ingest "$DATA/test.parquet" --out "$DATA/test"
# nulls, ranges, label balance, duplicates, train/test leakage; report in $DATA/train/checks/
"$BIN/tailguard" data check "$DATA/train" --against "$DATA/test" --rules examples/digits/checks.yaml
"$BIN/tailguard" train examples/digits/job.yaml "$@"

"$BIN/tailguard" serve --config examples/digits/serve.yaml > "$DATA/serve.log" 2>&1 &
SERVER=$!
stop_server() {
  kill -TERM "$SERVER" 2>/dev/null || true  # graceful: drain, then exit
  wait "$SERVER" 2>/dev/null || true
}
trap stop_server EXIT
"$BIN/python" examples/digits/infer.py --url http://127.0.0.1:8010 --data "$DATA" --rows 10 \
  || { echo "infer failed; server log:" >&2; tail -20 "$DATA/serve.log" >&2; exit 1; }
