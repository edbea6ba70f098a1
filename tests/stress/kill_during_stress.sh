#!/usr/bin/env bash
# Issue 4, point 3: kill -9 the daemon in the middle of a wac stress run
# with stable_pages=wait; after remount, a scrub finds 0 checksum
# mismatches. usage: kill_during_stress.sh BIN_DIR WAC_BIN [SECONDS]
set -euo pipefail
bin=$1 wac=$2 run_for=${3:-4}
[[ -c /dev/fuse ]] || { echo "FAIL: /dev/fuse is missing" >&2; exit 1; }
work=$(mktemp -d /tmp/kill-stress.XXXXXX)
img=$work/img mnt=$work/mnt
mkdir -p "$mnt"
daemon= stress=
cleanup() {
  [[ -n $stress ]] && kill -TERM "$stress" 2>/dev/null && wait "$stress" 2>/dev/null
  if mountpoint -q "$mnt"; then fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -uz "$mnt"; fi
  [[ -n $daemon ]] && kill -KILL "$daemon" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start_daemon() {
  "$bin/stablefs" "$img" "$mnt" -f -o stable_pages=wait,verify_writes 2>>"$work/daemon.log" &
  daemon=$!
  for _ in $(seq 200); do mountpoint -q "$mnt" && return 0; sleep 0.05; done
  echo "FAIL: mount did not come up"; cat "$work/daemon.log"; exit 1
}

"$bin/mkfs.stablefs" -q --size 512M "$img"
start_daemon
# 64 rewriters with fsync and 16 mmap writers, as the stress of issue 4.
"$wac" -n 64 -m 16 -l 64K --write-sync=fsync --mmap-sync=msync -t 60 --json "$mnt" \
  >"$work/wac.json" 2>"$work/wac.log" &
stress=$!
# Let the stress make progress (data really being written back), then kill.
# A counter that is missing from the JSON is a failure, not 0.
deadline=$((SECONDS + 30))
while :; do
  stats=$("$bin/stablefs-stat" --json "$mnt") || { echo "FAIL: stablefs-stat failed"; exit 1; }
  written=$(sed -n 's/.*"blocks_written":\([0-9][0-9]*\).*/\1/p' <<<"$stats")
  [[ -n $written ]] || { echo "FAIL: no blocks_written counter in: $stats"; exit 1; }
  (( written > 2000 )) && break
  (( SECONDS < deadline )) || { echo "FAIL: no writeback progress ($written blocks in 30 s)"; exit 1; }
  sleep 0.1  # polling the daemon's counters against the deadline above
done
sleep "$run_for"  # pacing, not synchronization: the stress runs on, the kill lands mid-stream
before=$("$bin/stablefs-stat" --json "$mnt")
kill -KILL "$daemon"
wait "$daemon" 2>/dev/null || true
daemon=
fusermount3 -uz "$mnt"
kill -TERM "$stress" 2>/dev/null || true
wait "$stress" 2>/dev/null || true
stress=
echo "killed the daemon during the stress; counters just before: $before"

start_daemon  # remount: replays the journal
grep -h "replayed" "$work/daemon.log" || true
fusermount3 -u "$mnt"
wait "$daemon"
daemon=
out=$("$bin/fsck.stablefs" --scrub "$img") || { echo "FAIL: fsck after kill -9: $out"; exit 1; }
echo "$out"
grep -q "[0-9] blocks scrubbed, 0 checksum mismatches" <<<"$out" ||
  { echo "FAIL: scrub did not report 0 checksum mismatches"; exit 1; }
echo "PASS: kill -9 during stress, remount, scrub clean"
