#!/usr/bin/env bash
# Reruns every benchmark the README quotes, appending to bench/results/<bench>.jsonl, then prints
# the tables (bench/table.py). Takes about an hour on 2 cores (compress builds and quantizes a
# 1.26B-parameter LLM; --only skips what you do not need).
#
# Usage: bench/run_all.sh [--ovpot PATH] [--runs N] [--commit C] [--only a,b,...] [--extra DIR]
#   --ovpot PATH   the binary measured (default target/release/ovpot, built with cargo when missing)
#   --runs N       timed runs per tool, medians (default 3; compress and llm: 1)
#   --commit C     the commit recorded in the results (default: git, see bench/common.py)
#   --only LIST    a subset of: quantize backend accuracy_aware saturation annotation_free compress
#                  llm placement python_api engine (default: all but engine, which runs cargo bench)
#   --extra DIR    bench/extra_models.py's output folder (default $OVPOT_EXTRA_MODELS): placement
#                  runs on it and backend adds its picodet_layout_cdla; both skipped without it
# Needs the peers venv (../shared/tools/setup_peers.sh .peers; PEERS_PYTHON or $OVPOT_PEERS/venv
# picks another) and ../shared/fixtures (or $OVPOT_FIXTURES). python_api runs when the ovpot
# Python package is installed in that venv (pip install ./python).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
PY="${PEERS_PYTHON:-${OVPOT_PEERS:-$root/.peers}/venv/bin/python}"
[ -x "$PY" ] || { echo "no peers venv at $PY: run ../shared/tools/setup_peers.sh .peers (or set OVPOT_PEERS / PEERS_PYTHON)" >&2; exit 2; }
ovpot="$root/target/release/ovpot"
ovpot_given=0
runs=3
commit=()
only="quantize,backend,accuracy_aware,saturation,analyze,annotation_free,compress,llm,placement,python_api"
extra="${OVPOT_EXTRA_MODELS:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --ovpot) ovpot="$2"; ovpot_given=1; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --commit) commit=(--commit "$2"); shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --extra) extra="$2"; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ ! -x "$ovpot" ] && [ "$ovpot_given" = 0 ]; then
  cargo build --release --bin ovpot
fi
export INFERENCE_PRECISION_HINT=f32
common=(--ovpot "$ovpot" "${commit[@]}")
wants() { [[ ",$only," == *",$1,"* ]]; }
failed=()
step() {  # name command...
  local name="$1"
  shift
  printf '\n=== %s\n' "$name"
  "$@" || failed+=("$name")
}

if wants quantize; then step quantize "$PY" bench/quantize.py "${common[@]}" --runs "$runs"; fi
if wants backend; then
  more=()
  if [ -n "$extra" ] && [ -d "$extra/picodet_layout_cdla" ]; then more=(--extra "$extra/picodet_layout_cdla"); fi
  step backend "$PY" bench/backend.py "${common[@]}" --runs "$runs"
  if [ "${#more[@]}" -gt 0 ]; then step backend-extra "$PY" bench/backend.py "${common[@]}" --runs "$runs" "${more[@]}"; fi
fi
if wants accuracy_aware; then step accuracy_aware "$PY" bench/accuracy_aware.py "${common[@]}"; fi
if wants saturation; then step saturation "$PY" bench/saturation.py "${common[@]}"; fi
if wants analyze; then step analyze "$PY" bench/analyze.py "${common[@]}"; fi
if wants annotation_free; then step annotation_free "$PY" bench/annotation_free.py "${common[@]}"; fi
if wants compress; then step compress "$PY" bench/compress.py "${common[@]}" --runs 1; fi
if wants llm; then
  corpus="$(mktemp -d)"
  ln -s "$root/tests/data/tiny_llama_stateful" "$corpus/tiny_llama"
  step llm "$PY" bench/llm.py "${common[@]}" --corpus "$corpus" --families tiny_llama \
    --only roundtrip,compress,quantize --runs "$runs" --fail-on-violation
  rm -rf "$corpus"
fi
if wants placement; then
  if [ -n "$extra" ] && [ -d "$extra" ]; then
    step placement "$PY" bench/placement.py "${common[@]}" "$extra"
  else
    echo "placement skipped: no --extra DIR (bench/extra_models.py OUT)"
  fi
fi
if wants python_api; then
  if "$PY" -c "import ovpot" 2>/dev/null; then
    step python_api "$PY" bench/python_api.py "${common[@]}" --runs "$runs"
  else
    echo "python_api skipped: the ovpot package is not installed in $PY's venv ($PY -m pip install ./python)"
  fi
fi
if wants engine; then step engine "$PY" bench/engine.py "${commit[@]}"; fi

printf '\n=== tables (bench/table.py)\n'
python3 bench/table.py
if [ "${#failed[@]}" -gt 0 ]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
