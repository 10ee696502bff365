#!/usr/bin/env bash
# Builds taskring three ways and runs the tests of each:
#   1. RelWithDebInfo: every test (unit, multi-process, stress, CLI) and a
#      very short run of each micro-benchmark (label `bench`); then the
#      Python package, installed with `pip install .` into a fresh venv
#      (build/test-venv), and its pytest suite (tests/python) against it;
#   2. ASan + UBSan: every test;
#   3. TSan: the tests labelled `concurrency` (threads over one mapping;
#      forking tests are left out because TSan does not follow fork);
# then fuzzes the durable log's reader with libFuzzer (clang) for 30 s.
# Usage: scripts/test.sh [--quick]   (--quick: only the first build)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

scripts/bootstrap.sh

jobs=$(nproc)
quick=0
[[ "${1:-}" == "--quick" ]] && quick=1

build() {  # build DIR [cmake args...]
  local dir=$1; shift
  cmake -S "$root" -B "$dir" -G Ninja -DTASKRING_BUILD_TESTS=ON -DTASKRING_BUILD_TOOLS=ON "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
}

run_ctest() {  # run_ctest DIR [ctest args...]
  local dir=$1; shift
  ctest --test-dir "$dir" --output-on-failure --no-tests=error -j "$jobs" "$@"
}

echo "== build 1/3: RelWithDebInfo"
build build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTASKRING_BUILD_BENCH=ON
run_ctest build/release

echo "== python: pip install . and pytest"
# A venv of its own: Debian's Python is externally managed, and the suite
# must test what pip installs, not the source tree. pip fetches the build
# tools (scikit-build-core, nanobind) and the test extras from PyPI.
rm -rf build/test-venv
python3 -m venv build/test-venv
build/test-venv/bin/pip install -q --disable-pip-version-check ".[test]"
TASKRING_CLI="$root/build/release/tools/taskring" TASKRING_PY_LEAK_CHECK=1 \
  build/test-venv/bin/python -m pytest -q -p no:cacheprovider "$root/tests/python"
((quick)) && exit 0

echo "== build 2/3: ASan + UBSan"
build build/asan -DCMAKE_BUILD_TYPE=Debug "-DTASKRING_SANITIZE=address;undefined" -DTASKRING_BUILD_BENCH=ON
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run_ctest build/asan

echo "== build 3/3: TSan (concurrency tests)"
build build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTASKRING_SANITIZE=thread -DTASKRING_BUILD_TOOLS=OFF
# TSan of gcc 12 cannot map its shadow with the kernel's full ASLR entropy;
# setarch -R runs the tests without address randomisation.
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:history_size=7 \
  setarch "$(uname -m)" -R ctest --test-dir build/tsan --output-on-failure --no-tests=error -j "$jobs" -L concurrency
echo "== fuzz: log reader (30 s)"
# libFuzzer needs clang++: tests/fuzz is a project of its own, built from the
# few sources the log reader needs, with ASan and UBSan. The seed corpus is
# generated (encoded records, small log files); a crash fails the script and
# leaves its input as build/fuzz/crash-*.
cmake -S "$root/tests/fuzz" -B build/fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/fuzz -j "$jobs"
rm -rf build/fuzz/corpus && mkdir -p build/fuzz/corpus
build/fuzz/make_log_corpus build/fuzz/corpus
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  build/fuzz/log_reader_fuzz -max_total_time=30 -timeout=10 -max_len=8192 -print_final_stats=1 \
  -artifact_prefix=build/fuzz/ build/fuzz/corpus 2>build/fuzz/fuzz.log ||
  { tail -n 60 build/fuzz/fuzz.log; echo "== fuzz: log reader FAILED (input in build/fuzz/crash-*)"; exit 1; }
grep '^stat::number_of_executed_units' build/fuzz/fuzz.log
echo "== all test builds passed"
