#!/usr/bin/env bash
# One fuzzer's ctest run: smoke.sh FUZZER MAKE_SEEDS SECONDS.
# 1. Every checked-in regression input (fuzz/regressions/<fuzzer>/) runs
#    once and must pass: each was a crash before its fix.
# 2. The fuzzer runs SECONDS seconds from the generated seeds, with a
#    per-input timeout and a memory limit, so a hang or unbounded
#    allocation fails the test like a crash does.
set -euo pipefail
fuzzer=$1 make_seeds=$2 seconds=$3
name=$(basename "$fuzzer")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$make_seeds" "$work/seeds" >/dev/null
[[ -d $work/seeds/${name%_fuzzer} ]] || { echo "smoke: no seeds for $name" >&2; exit 1; }
mkdir "$work/corpus" "$work/artifacts"
opts=(-timeout=25 -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1
      -artifact_prefix="$work/artifacts/")
regress=$here/regressions/${name%_fuzzer}
if [[ -d $regress ]] && compgen -G "$regress/*" >/dev/null; then
  echo "smoke: $name: regression inputs in $regress"
  "$fuzzer" "${opts[@]}" "$regress"/* 2>"$work/regress.log" || {
    tail -50 "$work/regress.log" >&2
    echo "smoke: $name: a regression input fails again" >&2
    exit 1
  }
fi
status=0
"$fuzzer" "${opts[@]}" -max_total_time="$seconds" "$work/corpus" \
  "$work/seeds/${name%_fuzzer}" >"$work/run.log" 2>&1 || status=$?
grep -E '^(stat::|#[0-9]+[[:space:]]+DONE)' "$work/run.log" || true
if ((status != 0)); then
  # The report (sanitizer or FUZZ_CHECK), without the engine's log lines.
  grep -v '^stablefs: ' "$work/run.log" | tail -80 >&2
  for a in "$work"/artifacts/*; do
    [[ -e $a ]] && echo "smoke: $name: failing input (base64): $(base64 -w0 "$a" | head -c 4000)" >&2
  done
  exit "$status"
fi
