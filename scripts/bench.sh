#!/usr/bin/env bash
# ovpot quantization vs NNCF 3.4 on the fixtures, judged in the real OpenVINO runtime.
# Builds the release ovpot, then runs scripts/bench_quantize.py (default quantization, all seven
# fixtures, median of 3 runs) and scripts/bench_accuracy_aware.py (ppocr_cls max_drop 0.005,
# mnist_cnn max_drop 0.001). Takes several minutes on 2 cores.
#
# Usage: scripts/bench.sh [--runs N] [--fixtures "a b ..."] [--cases "fixture:drop ..."]
#                         [--only quantize|accuracy_aware] [--out DIR]
#   --runs N        timed runs per tool in bench_quantize (default 3; median reported)
#   --fixtures ...  subset for bench_quantize, e.g. --fixtures "mnist_cnn ppocr_cls"
#   --cases ...     cases for bench_accuracy_aware, e.g. --cases "ppocr_cls:0.01"
#   --only X        run just one of the two benchmarks
#   --out DIR       keep the IRs, ovcheck JSON and bench_*.json there (default: a temporary folder)
# Needs the peers venv (made by `../shared/tools/setup_peers.sh .peers`; default $OVPOT_PEERS/venv or
# .peers/venv; PEERS_PYTHON picks another python) and ../shared/fixtures
# (or $OVPOT_FIXTURES).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PEERS_PYTHON:-${OVPOT_PEERS:-.peers}/venv/bin/python}"
[ -x "$PY" ] || { echo "no peers venv at $PY: run ../shared/tools/setup_peers.sh .peers (or set OVPOT_PEERS / PEERS_PYTHON)" >&2; exit 2; }
runs=3
fixtures=""
cases=""
only=""
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --fixtures) fixtures="$2"; shift 2 ;;
    --cases) cases="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$out" ]; then
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
fi
export INFERENCE_PRECISION_HINT=f32

cargo build --release --bin ovpot
if [ "$only" != "accuracy_aware" ]; then
  # shellcheck disable=SC2086 # word splitting of the fixture list is intended
  "$PY" scripts/bench_quantize.py --runs "$runs" --work "$out/quantize" --json "$out/bench_quantize.json" $fixtures
fi
if [ "$only" != "quantize" ]; then
  # shellcheck disable=SC2086
  "$PY" scripts/bench_accuracy_aware.py --work "$out/accuracy_aware" --json "$out/bench_accuracy_aware.json" $cases
fi
