#!/usr/bin/env bash
# ASan+UBSan build (clang, ./build-san) and the tests under it; the same
# build holds the libFuzzer targets (fuzz/README.md).
#
#   bash scripts/sanitize.sh        everything but the long runs: unit
#                                   tests, crash simulator, fuzzer smoke
#                                   runs, and the real-mount tests with the
#                                   daemon itself under ASan+UBSan (about
#                                   12 minutes on 2 cores, build included)
#   bash scripts/sanitize.sh --ci   what scripts/test.sh (and so CI) runs:
#                                   the tests labelled "sanitize" (unit
#                                   tests, crash simulator, 30 s per
#                                   fuzzer), building only what they need
#                                   (about 7 minutes, build included)
#
# Why CI runs only the "sanitize" label: the engine code the real-mount
# tests reach is the code the unit tests and the crash simulator already
# drive under ASan, in-process and deterministically; the mount tests
# under ASan add the FUSE adapter, and cost as much again as the whole
# default suite (4-5 minutes on 2 cores) plus building the daemon and
# every test with clang. The full run is for changes to fs/ and tools/.
#
# Every sanitizer report is fatal: ASan halts on the first error, UBSan is
# built with -fno-sanitize-recover, and LeakSanitizer turns a leak into a
# failing exit status. The reports also go to files (log_path), so one
# from a process whose exit status nobody checks (a daemon killed by a
# test, a helper) still fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=full
[[ ${1:-} == --ci ]] && mode=ci
build=${SANITIZE_BUILD_DIR:-build-san}
cxx=$(command -v clang++-14 || command -v clang++ || true)
cc=$(command -v clang-14 || command -v clang || true)
[[ -n $cxx && -n $cc ]] || { echo "sanitize: clang is missing (scripts/deps.sh installs it)" >&2; exit 1; }

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_CXX_COMPILER="$cxx" -DSTABLEFS_SANITIZE=address,undefined -DSTABLEFS_FUZZ=ON >/dev/null
if [[ $mode == ci ]]; then
  cmake --build "$build" -j"$(nproc)" --target sanitize_tests
else
  cmake --build "$build" -j"$(nproc)"
fi

logs=$(mktemp -d /tmp/sanitize-logs.XXXXXX)
trap 'rm -rf "$logs"' EXIT
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:abort_on_error=0:log_path=$logs/asan:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$logs/ubsan"
export LSAN_OPTIONS="log_path=$logs/lsan"
status=0
if [[ $mode == ci ]]; then
  ctest --test-dir "$build" --output-on-failure -j2 --timeout 900 -L sanitize -LE long || status=$?
else
  # crash_sim_sanitize repeats the crash tests discovered one by one.
  ctest --test-dir "$build" --output-on-failure -j2 --timeout 1800 -LE long \
    -E '^crash_sim_sanitize$' || status=$?
fi
if compgen -G "$logs/*" >/dev/null; then
  echo "sanitize: sanitizer reports:" >&2
  for f in "$logs"/*; do
    echo "== $f" >&2
    head -100 "$f" >&2
  done
  exit 1
fi
exit "$status"
