#!/usr/bin/env bash
# Runs the C/C++ examples under valgrind: any invalid access or definite leak fails the script.
#   scripts/c_memcheck.sh [--release] [--quick]
# Builds libovpot (dev profile by default), compiles examples_c/ against it, runs each on the
# MNIST CNN fixture. --quick (what CI runs by default) skips the accuracy-aware example, whose
# 1000 evaluations under valgrind take minutes. Rust's own one-time allocations (thread pools, thread-locals) are reported as
# "still reachable"/"possibly lost" and do not count; definite leaks and memory errors do.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
profile=debug
cargo_flags=()
quick=0
for arg in "$@"; do
  case "$arg" in
    --release) profile=release; cargo_flags=(--release) ;;
    --quick) quick=1 ;;
    *) echo "usage: $0 [--release] [--quick]"; exit 2 ;;
  esac
done
command -v valgrind >/dev/null || { echo "valgrind not installed"; exit 1; }

(cd "$root" && cargo build --lib "${cargo_flags[@]}")
target="${CARGO_TARGET_DIR:-$root/target}/$profile"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fixture="$root/tests/data/mnist_cnn"
flags=(-g -Wall -Wextra -Werror -DOVPOT_EXAMPLES_ALLOW_UNSUPPORTED=0 -I"$root/include" -I"$root/examples_c")
link=(-L"$target" -lovpot -Wl,-rpath,"$target" -lpthread -lm)

cc -std=c11 "${flags[@]}" "$root/examples_c/basics.c" -o "$work/basics" "${link[@]}"
cc -std=c11 "${flags[@]}" "$root/examples_c/quantize.c" -o "$work/quantize" "${link[@]}"
cc -std=c11 "${flags[@]}" "$root/examples_c/accuracy_aware.c" -o "$work/accuracy_aware" "${link[@]}"
c++ -std=c++17 "${flags[@]}" "$root/examples_c/quantize.cpp" -o "$work/quantize_cpp" "${link[@]}"

vg=(valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --track-origins=yes --quiet)
status=0
run() {
  local name="$1"; shift
  echo "== valgrind $name"
  local rc=0
  "${vg[@]}" "$@" || rc=$?
  if [[ $rc -ne 0 ]]; then echo "!! $name: exit $rc"; status=1; fi
}
run basics "$work/basics" "$fixture" "$work"
run quantize "$work/quantize" "$fixture" "$work/q.xml"
run quantize_cpp "$work/quantize_cpp" "$fixture" "$work/qcpp.xml"
if [[ $quick == 0 ]]; then
  run accuracy_aware "$work/accuracy_aware" "$fixture" "$work/aa.xml"
fi
exit $status
