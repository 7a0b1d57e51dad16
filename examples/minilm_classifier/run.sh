#!/usr/bin/env bash
# Text classification end to end: generated topic sentences -> tailguard data ingest ->
# tailguard train (MiniLM encoder fine-tuned across 2 workers) -> registered artifact
# "minilm-topics", servable with a BYTES "text" input.
# Run from the repository root: bash examples/minilm_classifier/run.sh
set -euo pipefail
BIN=${BIN:-.venv/bin}
DATA=.tailguard/examples/minilm
"$BIN/python" examples/minilm_classifier/prepare.py --out "$DATA"
"$BIN/tailguard" data ingest "$DATA/train.jsonl" --out "$DATA/train"
"$BIN/tailguard" data ingest "$DATA/test.jsonl" --out "$DATA/test"
"$BIN/tailguard" train examples/minilm_classifier/job.yaml "$@"
