#!/usr/bin/env bash
# Runs the C/C++ examples under valgrind: any invalid access or definite leak fails the script.
#   .ci/tools/c_memcheck.sh [--release | --prebuilt DIR] [--quick]
# Builds libovpot (dev profile by default; --prebuilt takes libovpot.so/.a from DIR instead, as CI
# does with what `cargo test` built), installs it into a temporary prefix, compiles
# examples_c/ against that copy with its Makefile and `pkg-config ovpot` (as a user would) and
# runs each on the MNIST CNN fixture. --quick (what CI runs by default) runs the accuracy-aware
# example on 20 evaluation samples instead of 1000 (minutes under valgrind) and without
# --track-origins (13x faster: 51 s against 676 s for the five examples). Rust's own one-time
# allocations (thread pools, thread-locals) are reported as "still reachable"/"possibly lost" and
# do not count; definite leaks and memory errors do. The C++ wrapper's test (cpp_wrapper_test, on
# tests/data; ~45 s with --quick) runs with the shipped suppressions and every leak kind an error.
# The valgrind runs go side by side, one per core (valgrind runs a program on one core;
# $OVPOT_MEMCHECK_JOBS runs at a time, default nproc).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
profile=debug
cargo_flags=()
quick=0
prebuilt=""
while [ "$#" -gt 0 ]; do
  case "$1" in
    --release) profile=release; cargo_flags=(--release) ;;
    --prebuilt)
      [ "$#" -ge 2 ] || { echo "--prebuilt needs a folder"; exit 2; }
      prebuilt="$2"; shift ;;
    --quick) quick=1 ;;
    *) echo "usage: $0 [--release | --prebuilt DIR] [--quick]"; exit 2 ;;
  esac
  shift
done
for tool in valgrind make pkg-config; do
  command -v "$tool" >/dev/null || { echo "$tool not installed"; exit 1; }
done

if [ -n "$prebuilt" ]; then
  target="$prebuilt"
  [ -f "$target/libovpot.so" ] || { echo "no libovpot.so in $target"; exit 1; }
else
  (cd "$root" && cargo build --lib "${cargo_flags[@]}")
  target="${CARGO_TARGET_DIR:-$root/target}/$profile"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fixture="$root/tests/data/mnist_cnn"
make -s -C "$root/examples_c" OVPOT_LIB_DIR="$target" BUILD="$work" PREFIX="$work/prefix" install
flags="-g -Wall -Wextra -Werror"
PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig" make -s -C "$root/examples_c" USE_PKG_CONFIG=1 BUILD="$work" \
  CFLAGS="$flags" CXXFLAGS="$flags" CPPFLAGS=-DOVPOT_EXAMPLES_ALLOW_UNSUPPORTED=0 all

vg=(valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --quiet)
# Where an uninitialised value came from: it doubles valgrind's time and finds no more errors, so
# the full run has it (to diagnose) and --quick does not.
[[ $quick == 1 ]] || vg+=(--track-origins=yes)
# Valgrind runs a program's threads one at a time: the runs below go side by side, one per core
# (the longest, cpp_wrapper_test, first), each into its own log; the logs are printed in order
# once all have ended, and any run that failed fails the script.
jobs_max="${OVPOT_MEMCHECK_JOBS:-$(nproc 2>/dev/null || echo 2)}"
names=()
spawn() { # spawn NAME COMMAND...: COMMAND in the background, output in $work/job<N>.log
  local name="$1" job="$work/job${#names[@]}"; shift
  while [[ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]]; do wait -n || true; done
  names+=("$name")
  (
    rc=0 t0=$SECONDS
    "$@" >"$job.log" 2>&1 || rc=$?
    echo "$rc $((SECONDS - t0))" >"$job.rc"
  ) &
}

# The shipped suppressions (include/ovpot.supp, installed beside the header; pkg-config variable
# `suppressions`): a correct program is clean with valgrind's usual strict flags (every leak kind
# an error), and a deliberate leak is still reported.
supp="$(PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig" pkg-config --variable=suppressions ovpot)"
[ -f "$supp" ] || { echo "!! pkg-config's suppressions ($supp) are not installed"; exit 1; }
cat > "$work/leak.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include "ovpot.h"
int main(int argc, char **argv) {
    char xml[4096], calib[4096];
    snprintf(xml, sizeof xml, "%s/model.xml", argv[1]);
    snprintf(calib, sizeof calib, "%s/calib", argv[1]);
    ovpot_model_t *model = NULL, *int8 = NULL;
    ovpot_dataset_t *data = NULL;
    ovpot_session_t *session = NULL;
    int failed = ovpot_model_read(xml, NULL, &model) != OVPOT_OK ||
                 ovpot_dataset_create_from_npy_folder(model, calib, &data) != OVPOT_OK ||
                 ovpot_session_create(model, "{\"stat_subset_size\": 16}", &session) != OVPOT_OK ||
                 ovpot_session_run(session, data, &int8) != OVPOT_OK;
    if (failed) fprintf(stderr, "ovpot: %s\n", ovpot_last_error());
    ovpot_model_free(int8); ovpot_session_free(session); ovpot_dataset_free(data);
    /* The deliberate leaks: a block of the program's own and an ovpot handle never freed. */
    if (argc > 2) { char *volatile leak = malloc(100); (void)leak; } else ovpot_model_free(model);
    return failed;
}
C
# shellcheck disable=SC2046
cc -g -Wall -Wextra -Werror "$work/leak.c" $(PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig" pkg-config --cflags --libs ovpot) \
  -o "$work/leak"
strict=(valgrind --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all --error-exitcode=9 --quiet
        --suppressions="$supp")
correct_program_is_clean() {
  local rc=0
  "${strict[@]}" "$work/leak" "$fixture" || rc=$?
  if [[ $rc -ne 0 ]]; then echo "!! a correct program is not clean with $supp (exit $rc)"; return 1; fi
}
deliberate_leak_is_reported() {
  local rc=0
  "${strict[@]}" "$work/leak" "$fixture" leak 2>"$work/leak.txt" || rc=$?
  if [[ $rc -ne 9 ]] || ! grep -q "definitely lost" "$work/leak.txt" ||
     ! grep -A12 "definitely lost" "$work/leak.txt" | grep -q "ovpot_model_read"; then
    cat "$work/leak.txt"; echo "!! the deliberate leaks (a malloc, an ovpot model) were not both reported (exit $rc)"
    return 1
  fi
}
# The C++ wrapper's test (every class, callbacks throwing): RAII frees every handle, also when an
# exception unwinds through a run. Strict, as above: anything but ovpot's once-per-process state
# fails it.
cpp_strict=("${strict[@]}")
[[ $quick == 1 ]] || cpp_strict+=(--track-origins=yes)

spawn "cpp_wrapper_test (shipped suppressions)" \
  "${cpp_strict[@]}" "$work/cpp_wrapper_test" "$root/tests/data" "$work/cpp_wrapper_test.out"
spawn basics "${vg[@]}" "$work/basics" "$fixture" "$work"
spawn quantize "${vg[@]}" "$work/quantize" "$fixture" "$work/q.xml"
spawn quantize_cpp "${vg[@]}" "$work/quantize_cpp" "$fixture" "$work/qcpp.xml"
spawn compress_weights "${vg[@]}" "$work/compress_weights" "$fixture" "$work/w4.xml"
if [[ $quick == 0 ]]; then
  spawn accuracy_aware "${vg[@]}" "$work/accuracy_aware" "$fixture" "$work/aa.xml"
else
  spawn accuracy_aware "${vg[@]}" "$work/accuracy_aware" "$fixture" "$work/aa.xml" 20
fi
spawn "a correct program (shipped suppressions)" correct_program_is_clean
spawn "a deliberate leak (shipped suppressions)" deliberate_leak_is_reported
wait

status=0
for i in "${!names[@]}"; do
  name="${names[$i]}"
  echo "== valgrind $name"
  cat "$work/job$i.log"
  read -r rc secs < "$work/job$i.rc" || { rc=1 secs="?"; }
  echo "== $name: $secs s"
  if [[ $rc -ne 0 ]]; then echo "!! $name: exit $rc"; status=1; fi
done
exit $status
