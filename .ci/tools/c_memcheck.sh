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
status=0
run() {
  local name="$1"; shift
  echo "== valgrind $name"
  local rc=0 t0=$SECONDS
  "${vg[@]}" "$@" || rc=$?
  echo "== $name: $((SECONDS - t0)) s"
  if [[ $rc -ne 0 ]]; then echo "!! $name: exit $rc"; status=1; fi
}
run basics "$work/basics" "$fixture" "$work"
run quantize "$work/quantize" "$fixture" "$work/q.xml"
run quantize_cpp "$work/quantize_cpp" "$fixture" "$work/qcpp.xml"
run compress_weights "$work/compress_weights" "$fixture" "$work/w4.xml"
if [[ $quick == 0 ]]; then
  run accuracy_aware "$work/accuracy_aware" "$fixture" "$work/aa.xml"
else
  run accuracy_aware "$work/accuracy_aware" "$fixture" "$work/aa.xml" 20
fi

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
echo "== valgrind with the shipped suppressions: a correct program"
rc=0; "${strict[@]}" "$work/leak" "$fixture" || rc=$?
if [[ $rc -ne 0 ]]; then echo "!! a correct program is not clean with $supp (exit $rc)"; status=1; fi
echo "== valgrind with the shipped suppressions: a deliberate leak is still reported"
rc=0; "${strict[@]}" "$work/leak" "$fixture" leak 2>"$work/leak.txt" || rc=$?
if [[ $rc -ne 9 ]] || ! grep -q "definitely lost" "$work/leak.txt" ||
   ! grep -A12 "definitely lost" "$work/leak.txt" | grep -q "ovpot_model_read"; then
  cat "$work/leak.txt"; echo "!! the deliberate leaks (a malloc, an ovpot model) were not both reported (exit $rc)"; status=1
fi
# The C++ wrapper's test (every class, callbacks throwing): RAII frees every handle, also when an
# exception unwinds through a run. Strict, as above: anything but ovpot's once-per-process state
# fails it.
cpp_strict=("${strict[@]}")
[[ $quick == 1 ]] || cpp_strict+=(--track-origins=yes)
echo "== valgrind cpp_wrapper_test with the shipped suppressions"
rc=0; t0=$SECONDS
"${cpp_strict[@]}" "$work/cpp_wrapper_test" "$root/tests/data" "$work/cpp_wrapper_test.out" || rc=$?
echo "== cpp_wrapper_test: $((SECONDS - t0)) s"
if [[ $rc -ne 0 ]]; then echo "!! cpp_wrapper_test is not clean with $supp (exit $rc)"; status=1; fi
exit $status
