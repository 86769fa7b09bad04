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
# do not count; definite leaks and memory errors do.
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
exit $status
