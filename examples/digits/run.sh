#!/usr/bin/env bash
# Digits end to end: sklearn digits -> Parquet -> tailguard data ingest -> tailguard train
# (2 workers, DDP on CPU) to >= 97% held-out accuracy -> registered artifact "digits".
# Run from the repository root: bash examples/digits/run.sh
set -euo pipefail
BIN=${BIN:-.venv/bin}
DATA=.tailguard/examples/digits
"$BIN/python" examples/digits/prepare.py --out "$DATA"
"$BIN/tailguard" data ingest "$DATA/train.parquet" --out "$DATA/train"
"$BIN/tailguard" data ingest "$DATA/test.parquet" --out "$DATA/test"
"$BIN/tailguard" train examples/digits/job.yaml "$@"
