#!/usr/bin/env bash
# ovpot engine vs OpenVINO runtime, single-sample latency on the big fixtures (issue 3).
# Usage: scripts/bench_engine.sh [--runs N] [FIXTURE...]
# Needs the peers venv with openvino (as scripts/bench.sh: PEERS_PYTHON if set, else
# $OVPOT_PEERS/venv or .peers/venv under the repo) and the fixtures in
# ../shared/fixtures (or $OVPOT_FIXTURES). Prints one table: OpenVINO with 1 and 2 inference
# threads (INFERENCE_NUM_THREADS), ovpot with 1 and 2 threads (RAYON_NUM_THREADS and
# MATMUL_NUM_THREADS), and the ratios ovpot / OpenVINO at equal thread counts.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PEERS_PYTHON:-${OVPOT_PEERS:-.peers}/venv/bin/python}"
[ -x "$PY" ] || { echo "no peers venv at $PY: run ../shared/tools/setup_peers.sh .peers (or set OVPOT_PEERS / PEERS_PYTHON)" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cargo bench --bench engine --no-run >/dev/null 2>&1 || cargo bench --bench engine --no-run
RAYON_NUM_THREADS=1 MATMUL_NUM_THREADS=1 cargo bench -q --bench engine -- --json "$@" >"$tmp/ovpot_1.jsonl"
RAYON_NUM_THREADS=2 MATMUL_NUM_THREADS=2 cargo bench -q --bench engine -- --json "$@" >"$tmp/ovpot_2.jsonl"

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
  --engine "$tmp/ovpot_2.jsonl" --engine-label "ovpot 2 thr"
