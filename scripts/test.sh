#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
if [[ ! -c /dev/fuse ]]; then
  echo "test: /dev/fuse is missing: the mount tests need FUSE (modprobe fuse)" >&2
  exit 1
fi
# The long soak runs (label "long": 1000 kills, the full crash simulation)
# are run by hand with: ctest --test-dir build -L long
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
ctest --test-dir build --output-on-failure -j2 --timeout 900 -LE long 2>&1 | tee "$log" ||
  status=$?
# The same unit tests and crash simulator again under ASan+UBSan, and a
# 30 s run of each libFuzzer target, from one more (clang) build in
# ./build-san: scripts/sanitize.sh says why only these.
if ((status == 0)); then
  bash scripts/sanitize.sh --ci 2>&1 | tee -a "$log" || status=$?
fi
# ctest counts a skipped test (GTEST_SKIP) as passed; in CI it is a failure.
if [[ ${CI:-} == true || ${CI:-} == 1 ]] && grep -q '(Skipped)' "$log"; then
  echo "test: in CI a skipped test is a failure, and these skipped:" >&2
  grep '(Skipped)' "$log" >&2
  exit 1
fi
(( status == 0 )) || exit "$status"
# The benchmark harness, one short round on every system (stablefs, fuse2fs,
# ext4 on a loop device): it must run end to end; it asserts nothing about
# speed. The figures go to the log; bench/README.md says how to read them.
bash bench/run --quick --build build
