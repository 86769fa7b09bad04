#!/usr/bin/env bash
# Fuzzes ovpot's untrusted-input parsers with cargo-fuzz (libFuzzer + ASan) on the stable
# toolchain (RUSTC_BOOTSTRAP=1 unlocks the nightly flags cargo-fuzz passes).
#   .ci/tools/fuzz.sh [seconds-per-target] [target...]     (default: 30 s, every target)
# Seeds come from fuzz/seeds/<target>/ plus, for ir_reader, each tests/data/*/model.xml with its
# weights (`xml \0 bin`). The corpus grows in fuzz/corpus/<target>/ (gitignored); a crash leaves
# its input in fuzz/artifacts/<target>/ and fails the script: copy it to
# tests/data/fuzz_regressions/<target>/ so tests/fuzz_regressions.rs replays it.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root/fuzz"
seconds="${1:-30}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then targets=(ir_reader quant_config); fi

if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --version 0.12.0 --locked
fi
export RUSTC_BOOTSTRAP=1

mkdir -p corpus/ir_reader corpus/quant_config
cp -n seeds/ir_reader/* corpus/ir_reader/
cp -n seeds/quant_config/* corpus/quant_config/
for xml in "$root"/tests/data/*/model.xml; do
  name="$(basename "$(dirname "$xml")")"
  bin="${xml%.xml}.bin"
  # Models with big weights are seeded with their first 64 KiB: the reader gets past the text
  # and fails on the first constant that lies beyond, which is itself a case worth mutating.
  if [ ! -e "corpus/ir_reader/fixture_$name" ]; then
    { cat "$xml"; printf '\0'; head -c 65536 "$bin"; } > "corpus/ir_reader/fixture_$name"
  fi
done

# Previously found crashes stay in the corpus so the fuzzer keeps mutating around them.
for t in "${targets[@]}"; do
  if [ -d "$root/tests/data/fuzz_regressions/$t" ]; then
    cp -n "$root/tests/data/fuzz_regressions/$t"/* "corpus/$t/" 2>/dev/null || true
  fi
done

# FUZZ_KEEP_GOING=1: fork mode, record every crash and keep fuzzing (for long runs while known
# crashes are still open); the default stops at the first crash, as CI wants.
extra=()
if [ "${FUZZ_KEEP_GOING:-0}" = 1 ]; then
  extra=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
fi

status=0
for t in "${targets[@]}"; do
  echo "== fuzz $t for ${seconds}s"
  # rss_limit: a model that asks for gigabytes must be refused, not allocated.
  if ! cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$seconds" -max_len=131072 \
      -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 "${extra[@]}"; then
    echo "!! fuzz $t failed: see fuzz/artifacts/$t/"
    status=1
  fi
done
exit $status
