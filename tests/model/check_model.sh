#!/usr/bin/env bash
# Checks core/page_cache.pml, the Promela model of the stable-page protocol,
# exhaustively with spin, and asserts the expected verdicts:
#   wait|shadow|bounce  checks (1)-(3) hold, full state space explored
#   off                 spin finds the check (1) counterexample
#   mutation            each planted bug is caught by the check it breaks
#                       (the checks can fail, and for the right reason)
#   reach               every probed path is reachable (the checks are not
#                       vacuous: writers do wait, shadows are made, ...)
# A run expected to fail passes only if spin's first error is the expected
# one (that check's assertion, the deadlock, that probe): an unrelated
# assertion or a syntax slip in the model is a BAD verdict, not a pass.
#   order               check (4), lost update under shadow (see the .pml)
#   all                 everything above
# Usage: check_model.sh [wait|shadow|bounce|off|mutation|reach|order|all]...
# Works in a fresh temp dir under $MODEL_WORKDIR (default: the current
# directory), never next to the model. Needs spin and gcc. Prints one line
# per run; exits non-zero if any verdict is unexpected.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
model=${MODEL_PML:-$here/../../core/page_cache.pml}
[ -f "$model" ] || { echo "model not found: $model" >&2; exit 2; }
command -v spin >/dev/null || { echo "spin not installed (apt-get install spin)" >&2; exit 2; }
command -v gcc >/dev/null || { echo "gcc not installed" >&2; exit 2; }
base=${MODEL_WORKDIR:-$PWD}
mkdir -p "$base"
work=$(mktemp -d "$base/spin.XXXXXX")
bad=0
trap '[ $bad -eq 0 ] && rm -rf "$work"' EXIT

# What spin prints for each property when it fails (pan's first error
# line); B_FREE is 0 and B_RESERVED 1 after the preprocessor.
check1='assertion violated \(got==cs\)'
check2='invalid end state'
check3='assertion violated (\(\(bstate\[b\]==0\)&&\(inflight\[b\]==0\)\)|\(\(bstate\[b\]==1\)&&\(inflight\[b\]==1\)\)|\(inflight\[old\]==0\))'
check4='assertion violated \(cs>=map_ver\)'
probe() { echo "assertion violated \\($1!=$1\\)"; }

# run NAME EXPECT SPIN_DEFINES...
#   EXPECT: pass     no error, search complete (no truncation, no depth limit)
#           fail:RE  spin reports an error, its first error line matches the
#                    extended regex RE, and a trail file is written
run() {
  local name=$1 expect=$2; shift 2
  local dir=$work/$name
  mkdir -p "$dir"
  cp "$model" "$dir/model.pml"
  local t0 t1 out verdict states secs
  t0=$(date +%s.%N)
  # A run expected to fail stops after a few thousand states: -O0 builds
  # pan several times faster than -O2, which only pays off for full searches.
  local opt=-O2
  [ "$expect" != pass ] && opt=-O0
  if ! (cd "$dir" && spin "$@" -a model.pml >spin.log 2>&1 &&
        gcc $opt -w -DSAFETY -DMEMLIM=4096 -o pan pan.c >gcc.log 2>&1); then
    echo "FAIL $name: spin/gcc did not build a verifier (see $dir)"
    bad=1; return
  fi
  (cd "$dir" && ./pan -m200000 >pan.out 2>&1)
  t1=$(date +%s.%N)
  out=$dir/pan.out
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  states=$(awk '/states, stored/ { print $1; exit }' "$out")
  local errors why=
  errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$out" | head -1)
  if [ -z "$errors" ]; then
    verdict=INCOMPLETE
  elif [ "$errors" -gt 0 ]; then
    why=$(grep -m1 -E 'assertion violated|invalid end state|error:' "$out" | sed 's/^pan:1: //')
    verdict="FAIL ($why)"
  elif grep -qE 'max search depth too small|out of memory|Search not completed' "$out"; then
    verdict=INCOMPLETE
  else
    verdict=PASS
  fi
  local ok=0
  local want=pass
  case $expect in
    pass) [ "$verdict" = PASS ] && [ "$errors" = 0 ] && ok=1 ;;
    fail:*)
      want="fail with /${expect#fail:}/"
      case $verdict in
        FAIL*) [ -f "$dir/model.pml.trail" ] && grep -qE "${expect#fail:}" <<<"$why" && ok=1 ;;
      esac ;;
    *) echo "check_model.sh: bad expectation '$expect' for $name" >&2 ;;
  esac
  printf '%-4s %-22s expected %s; got %s, %s states, %ss\n' \
    "$([ $ok = 1 ] && echo ok || echo BAD)" "$name" "$want" "$verdict" "${states:-?}" "$secs"
  if [ $ok = 0 ]; then bad=1; echo "     output kept in $dir"; fi
}

policy() {  # the verdict runs of one policy
  case $1 in
    wait)   run wait pass -DPOLICY=WAIT ;;
    shadow) run shadow pass -DPOLICY=SHADOW ;;
    bounce) run bounce pass -DPOLICY=BOUNCE ;;
    off)    run off "fail:$check1" -DPOLICY=OFF ;;
  esac
}

mutation() {
  # WAIT without the writer's wait_on_page_writeback: check (1) must fail.
  run mutation.wait-nowait "fail:$check1" -DPOLICY=WAIT -DMUTATION=NOWAIT
  # Freed blocks allocatable before their freeing commit: check (3) fails.
  run mutation.early-reuse "fail:$check3" -DPOLICY=WAIT -DMUTATION=EARLY_REUSE
  # end_page_writeback under the page lock: check (2), a deadlock.
  run mutation.locked-end "fail:$check2" -DPOLICY=WAIT -DMUTATION=LOCKED_END
}

reach() {  # probe numbers are documented in the model
  local k
  for k in 1 5 6; do run reach.wait.$k "fail:$(probe $k)" -DPOLICY=WAIT -DREACH=$k; done
  for k in 1 2 3 5 6 7; do run reach.shadow.$k "fail:$(probe $k)" -DPOLICY=SHADOW -DREACH=$k; done
  for k in 1 4 5; do run reach.bounce.$k "fail:$(probe $k)" -DPOLICY=BOUNCE -DREACH=$k; done
}

order() {
  run order.wait pass -DPOLICY=WAIT -DCHECK_ORDER
  run order.bounce pass -DPOLICY=BOUNCE -DCHECK_ORDER
  # Two writebacks of one page index (flusher + fsync), the shadowed
  # frame's and its copy's: writeback_inode waits for the older one, so
  # the older bytes can never be mapped over the newer ones. Without that
  # wait (the bug the model found) check (4) must fail.
  run order.shadow pass -DPOLICY=SHADOW -DCHECK_ORDER
  run order.shadow-without-wait "fail:$check4" -DPOLICY=SHADOW -DCHECK_ORDER -DNO_ORDER_WAIT
}

[ $# -eq 0 ] && set -- all
for what in "$@"; do
  case $what in
    wait|shadow|bounce|off) policy "$what" ;;
    mutation) mutation ;;
    reach) reach ;;
    order) order ;;
    all) for p in wait shadow bounce off; do policy $p; done; mutation; reach; order ;;
    *) echo "unknown: $what" >&2; bad=1 ;;
  esac
done
exit $bad
