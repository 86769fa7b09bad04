#!/usr/bin/env bash
# Byte-identical outputs: runs two ovpot binaries on every fixture in every mode (default,
# OpenVINO backend, no-VNNI target on both backends, mixed preset, 7-bit weights everywhere,
# accuracy-aware with labels on both backends or annotation-free, data-free, compress-weights
# int8/int4, the stateful test export) and compares the IRs they write, file by file.
#
#   bench/identical.sh OLD_OVPOT NEW_OVPOT [WORK_DIR]
#
# Needs ../shared/fixtures and the peers venv (.peers, made by ../shared/tools/setup_peers.sh) for
# the OpenVINO backend. Exit 0 when every IR is identical; the differing files are listed
# otherwise. A refactor must leave this at 0; report.json is not compared (it holds timings).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OLD=$(realpath "$1"); NEW=$(realpath "$2"); WORK="${3:-$(mktemp -d)}"
FX="${OVPOT_FIXTURES:-$ROOT/../shared/fixtures}"
LLM="$ROOT/tests/data/tiny_llama_stateful"
OVLIB=$(ls "${OVPOT_PEERS:-$ROOT/.peers}"/venv/lib/python3*/site-packages/openvino/libs/libopenvino_c.so.* 2>/dev/null | head -1)
export INFERENCE_PRECISION_HINT=f32
[ -n "$OVLIB" ] || echo "no OpenVINO C library in the peers venv: OpenVINO-backend cases fail alike on both sides" >&2

cases() { # prints "name|args" lines
  for f in digits_mlp mnist_cnn mtcnn_onet mtcnn_rnet ppocr_cls mobilenet_v2 minilm_l6; do
    [ -f "$FX/$f/model.xml" ] || continue
    local m="quantize -m $FX/$f/model.xml --data $FX/$f/calib" ov="--backend openvino --openvino-lib $OVLIB"
    echo "$f.default|$m"
    echo "$f.ov|$m $ov"
    echo "$f.avx2|$m --target-isa avx2"
    echo "$f.avx2ov|$m --target-isa avx2 $ov"
    echo "$f.mixed|$m --preset mixed --subset-size 64"
    echo "$f.vnni_all|$m --target-isa vnni --saturation-fix all --subset-size 64"
    if [ -f "$FX/$f/eval_labels.npy" ]; then
      local aa="$m -q accuracy_aware --eval-data $FX/$f/eval --labels $FX/$f/eval_labels.npy --max-drop 0.001 --max-samples 100 --target-isa avx2"
      echo "$f.aa|$aa"
      echo "$f.aaov|$aa $ov"
    else
      echo "$f.af|$m -q accuracy_aware --eval-data $FX/$f/eval --annotation-free --max-drop 0.001 --max-samples 50"
    fi
    case $f in mnist_cnn|ppocr_cls|mobilenet_v2|mtcnn_onet) echo "$f.datafree|quantize -m $FX/$f/model.xml --engine data_free --subset-size 16" ;; esac
    echo "$f.c8|compress-weights -m $FX/$f/model.xml --mode int8_asym"
    echo "$f.c4|compress-weights -m $FX/$f/model.xml --mode int4_asym --group-size 32 --group-size-fallback adjust --all-layers"
  done
  echo "llama.c4|compress-weights -m $LLM/model.xml --mode int4_sym --group-size 32"
  echo "llama.w8a8|quantize -m $LLM/model.xml --data $LLM/calib"
  echo "llama.w8a8ov|quantize -m $LLM/model.xml --data $LLM/calib --backend openvino --openvino-lib $OVLIB"
}

status=0
while IFS='|' read -r name args; do
  for side in old new; do
    bin=$OLD; [ $side = new ] && bin=$NEW
    d="$WORK/$side/$name"; rm -rf "$d"; mkdir -p "$d"
    # shellcheck disable=SC2086
    "$bin" $args --quiet --output-dir "$d" >"$d.log" 2>&1; echo $? > "$d.rc"
  done
  if ! cmp -s "$WORK/old/$name.rc" "$WORK/new/$name.rc"; then
    echo "DIFFERENT exit status: $name ($(cat "$WORK/old/$name.rc") -> $(cat "$WORK/new/$name.rc"))"; status=1; continue
  fi
  if ! diff -q <(cd "$WORK/old/$name" && find . | sort) <(cd "$WORK/new/$name" && find . | sort) >/dev/null; then
    echo "DIFFERENT files written: $name"; status=1
  fi
  for f in $(cd "$WORK/old/$name" && find . -name '*.xml' -o -name '*.bin' | sort); do
    if ! cmp -s "$WORK/old/$name/$f" "$WORK/new/$name/$f"; then echo "DIFFERENT: $name/$f"; status=1; fi
  done
  n=$(cd "$WORK/old/$name" && find . -name '*.xml' | wc -l)
  echo "$name: $n IR(s), exit $(cat "$WORK/new/$name.rc")"
done < <(cases)
[ $status = 0 ] && echo "all IRs byte-identical ($WORK)" || echo "outputs differ ($WORK)"
exit $status
