#!/usr/bin/env bash
# ovpot engine vs OpenVINO runtime, single-sample latency on the big fixtures (issue 3).
# Usage: scripts/bench_engine.sh [--runs N] [FIXTURE...]
# Needs a venv with openvino (default /work/peers/venv; set PEERS_PYTHON to override) and the
# fixtures in ../shared/fixtures (or $OVPOT_FIXTURES). Prints one table: OpenVINO with 1 thread and
# default threads, ovpot with 1 thread (RAYON_NUM_THREADS=1 MATMUL_NUM_THREADS=1) and default
# threads, and the ratios ovpot / OpenVINO.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PEERS_PYTHON:-/work/peers/venv/bin/python}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cargo bench --bench engine --no-run >/dev/null 2>&1 || cargo bench --bench engine --no-run
RAYON_NUM_THREADS=1 MATMUL_NUM_THREADS=1 cargo bench -q --bench engine -- --json "$@" >"$tmp/ovpot_1.jsonl"
cargo bench -q --bench engine -- --json "$@" >"$tmp/ovpot_default.jsonl"

runs=()
fixtures=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=(--runs "$2"); shift 2 ;;
    --*) shift ;;
    *) fixtures+=("$1"); shift ;;
  esac
done

"$PY" scripts/bench_engine.py "${runs[@]}" "${fixtures[@]}" \
  --engine "$tmp/ovpot_1.jsonl" --engine-label "ovpot 1 thr" \
  --engine "$tmp/ovpot_default.jsonl" --engine-label "ovpot default"
