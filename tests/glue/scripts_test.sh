#!/bin/bash
# The xfstests glue without xfstests and without a mount: local.config
# rendering, the df wrapper, image setup, and the summary parser on the
# canned results in fixtures/.
#
# usage: scripts_test.sh GLUE_DIR MKFS_STABLEFS FSCK_STABLEFS
set -u
glue=$1
bin_dir=$(dirname "$2")
[[ "$(dirname "$3")" == "$bin_dir" ]] || { echo "mkfs and fsck must be in one directory"; exit 2; }
here=$(dirname "$(readlink -f "$0")")
fixtures=$here/fixtures
. "$here/assert.sh"
. "$glue/lib/config.sh"
. "$glue/lib/images.sh"
. "$glue/lib/processes.sh"
. "$glue/lib/watchdog.sh"
. "$glue/lib/mount_helper.sh"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- local.config ---------------------------------------------------------
begin "ConfigNamesImagesMountsAndFuseType"
sfs_render_config "$glue/local.config.in" "$tmp/local.config" /w/test.img /w/test \
	/w/scratch.img /w/scratch allow_other,commit=1 /w/results /g
expect_status 0 $?
(
	# The config is sourced by xfstests' common/config: source it the same way.
	. "$tmp/local.config"
	expect_eq fuse "$FSTYP"
	expect_eq .stablefs "$FUSE_SUBTYP"
	expect_eq /w/test.img "$TEST_DEV"
	expect_eq /w/test "$TEST_DIR"
	expect_eq /w/scratch.img "$SCRATCH_DEV"
	expect_eq /w/scratch "$SCRATCH_MNT"
	expect_eq "-o allow_other,commit=1" "$MOUNT_OPTIONS"
	expect_eq "-o allow_other,commit=1" "$TEST_FS_MOUNT_OPTS"
	expect_eq /w/results "$RESULT_BASE"
	expect_eq "/g/df-fuse -T -P" "$DF_PROG"
	exit "$failures"
)
record_subshell $?

begin "ConfigRefusesPathsXfstestsCannotQuote"
sfs_render_config "$glue/local.config.in" "$tmp/bad" "/w/my test.img" /w/test \
	/w/scratch.img /w/scratch allow_other /w/results /g 2>/dev/null
expect_status 1 $?
sfs_render_config "$glue/local.config.in" "$tmp/bad" '/w/$(x).img' /w/test \
	/w/scratch.img /w/scratch allow_other /w/results /g 2>/dev/null
expect_status 1 $?
sfs_render_config "$glue/local.config.in" "$tmp/bad" /w/t.img /w/test \
	/w/s.img /w/scratch "allow_other, ro" /w/results /g 2>/dev/null
expect_status 1 $?

begin "ConfigRefusesSharingAnImageBetweenTestAndScratch"
sfs_render_config "$glue/local.config.in" "$tmp/bad" /w/same.img /w/test \
	/w/same.img /w/scratch allow_other /w/results /g 2>/dev/null
expect_status 1 $?

# --- df wrapper -------------------------------------------------------------
begin "DfWrapperReportsStablefsMountsAsTypeFuse"
mkdir -p "$tmp/fakebin"
cat > "$tmp/fakebin/df" <<'FAKE'
#!/bin/bash
echo "Filesystem Type 1024-blocks Used Available Capacity Mounted on"
echo "/w/test.img fuse.stablefs 100 1 99 1% /w/test"
echo "/dev/vda1 ext4 100 1 99 1% /"
echo "/w/other fuse.stablefsx 100 1 99 1% /w/other"
exit 3
FAKE
chmod +x "$tmp/fakebin/df"
out=$(PATH=$tmp/fakebin:$PATH "$glue/df-fuse" -T -P)
expect_status 3 $?
expect_eq fuse "$(awk '$1 == "/w/test.img" { print $2 }' <<< "$out")"
expect_eq ext4 "$(awk '$1 == "/dev/vda1" { print $2 }' <<< "$out")"
expect_eq fuse.stablefsx "$(awk '$1 == "/w/other" { print $2 }' <<< "$out")"

begin "DfWrapperDropsOnlyTheComplaintOfSomeoneElsesDeadFuseMount"
cat > "$tmp/fakebin/df" <<'FAKE'
#!/bin/bash
echo "Filesystem Type 1024-blocks Used Available Capacity Mounted on"
echo "/w/test.img fuse.stablefs 100 1 99 1% /w/test"
echo "df: /elsewhere/mnt: Transport endpoint is not connected" >&2
[[ -n "$EXTRA_ERROR" ]] && echo "$EXTRA_ERROR" >&2
exit 1
FAKE
err=$(PATH=$tmp/fakebin:$PATH TEST_DIR=/w/test "$glue/df-fuse" -T -P 2>&1 >/dev/null)
expect_status 0 $?
expect_eq "" "$err"
err=$(PATH=$tmp/fakebin:$PATH TEST_DIR=/elsewhere/mnt "$glue/df-fuse" -T -P 2>&1 >/dev/null)
expect_status 1 $?
expect_contains "$err" "/elsewhere/mnt: Transport endpoint is not connected"
err=$(PATH=$tmp/fakebin:$PATH EXTRA_ERROR="df: /w/x: Permission denied" "$glue/df-fuse" -T -P \
	2>&1 >/dev/null)
expect_status 1 $?
expect_eq "df: /w/x: Permission denied" "$err"

# --- images -----------------------------------------------------------------
begin "ImageSetupFormatsAFreshImageThatFsckFindsClean"
sfs_make_image "$bin_dir" "$tmp/a.img" 32M
expect_status 0 $?
sfs_fsck_image "$bin_dir" "$tmp/a.img" "$tmp/fsck.log"
expect_status 0 $?

begin "ImageSetupNeverFormatsAnExistingFile"
echo precious > "$tmp/existing.img"
sfs_make_image "$bin_dir" "$tmp/existing.img" 32M 2>/dev/null
expect_status 1 $?
expect_eq precious "$(cat "$tmp/existing.img")"

begin "FsckReportsACorruptImage"
cp "$tmp/a.img" "$tmp/b.img"
# The superblock lives at the start; overwrite it.
dd if=/dev/urandom of="$tmp/b.img" bs=4096 count=2 conv=notrunc status=none
sfs_fsck_image "$bin_dir" "$tmp/b.img" "$tmp/fsck.log"
expect_status 8 $?  # e2fsck's operational error: no valid superblock to check from

# --- summary parser ---------------------------------------------------------
begin "SummarySeparatesNewFailuresFromExpectedOnes"
out=$("$glue/summarize" "$fixtures/mixed" "$fixtures/expected-failures")
expect_status 1 $?
expect_contains "$out" "ran 8: passed 2, failed 3, not run 3"
expect_eq "generic/003" "$(sed -n '/^Expected failures/,/^$/p' <<< "$out" | awk '/generic/ { print $1 }')"
expect_eq "generic/007 generic/009" "$(sed -n '/^NEW failures/,/^$/p' <<< "$out" | awk '/generic/ { print $1 }' | xargs)"
expect_contains "$out" "atime is not updated by FUSE reads"

begin "SummaryReadsOnlyTheLastRunInCheckLog"
# generic/002 failed in the earlier block of the same check.log.
out=$("$glue/summarize" "$fixtures/mixed" "$fixtures/expected-failures")
expect_not_contains "$out" "generic/002"

begin "SummaryNamesTimeoutsExpectedNotRunsAndFixedEntries"
expect_contains "$out" "generic/009    timed out after 900s"
expect_eq "generic/005" "$(sed -n '/^Expected not run/,/^$/p' <<< "$out" | awk '/generic/ { print $1 }')"
expect_contains "$out" "but PASSED (remove them from the list): generic/008"
expect_contains "$out" "2 fuse does not support shutdown"

begin "SummaryPassesWhenEveryFailureIsExpected"
printf 'generic/007 r\ngeneric/009 r\n' | cat "$fixtures/expected-failures" - > "$tmp/all-expected"
out=$("$glue/summarize" "$fixtures/mixed" "$tmp/all-expected")
expect_status 0 $?
expect_contains "$out" "NEW failures (0)"

begin "SummaryPassesAllPassRunAndCountsNotRun"
out=$("$glue/summarize" "$fixtures/all-pass" "$fixtures/expected-failures")
expect_status 0 $?
expect_contains "$out" "ran 3: passed 2, failed 0, not run 1"

begin "SummaryFailsWhenFsckFoundErrors"
cp -r "$fixtures/all-pass" "$tmp/fsck-bad"
mv "$tmp/fsck-bad/glue-fsck-bad" "$tmp/fsck-bad/glue-fsck"
out=$("$glue/summarize" "$tmp/fsck-bad" "$fixtures/expected-failures")
expect_status 1 $?
expect_contains "$out" "scratch.img: exit 4, ERRORS"

begin "SummaryRefusesAnUnfinishedRun"
"$glue/summarize" "$fixtures/unfinished" "$fixtures/expected-failures" > /dev/null
expect_status 2 $?
"$glue/summarize" "$tmp/does-not-exist" 2>/dev/null
expect_status 2 $?

# --- daemon shim -------------------------------------------------------------
begin "DaemonShimPassesItsArgumentsToTheDaemon"
sfs_write_daemon_shim "$tmp/shim" /bin/echo 600
echo x > "$tmp/free.img"
expect_eq "$tmp/free.img /m -o rw" "$(timeout 30 "$tmp/shim" "$tmp/free.img" /m -o rw)"

begin "DaemonShimDoesNotWaitForTheLockOnRemount"
# A mounted image stays locked by its daemon; a remount must not wait 600 s.
mkfifo "$tmp/hold"
flock "$tmp/free.img" cat "$tmp/hold" &
holder=$!
exec {hold_fd}> "$tmp/hold"   # the holder has the lock once cat has opened the FIFO
out=$(timeout 30 "$tmp/shim" "$tmp/free.img" /m -o ro,remount)
expect_status 0 $?
expect_eq "$tmp/free.img /m -o ro,remount" "$out"
exec {hold_fd}>&-
wait "$holder"

begin "DaemonShimWithoutWaitIsTheDaemonItself"
sfs_write_daemon_shim "$tmp/shim0" /bin/echo 0
expect_eq /bin/echo "$(readlink "$tmp/shim0")"

# --- per-test timeout -------------------------------------------------------
begin "WatchdogKillsATestThatOutlivesItsTimeoutAndRecordsIt"
# A fake ./check running one test script that forks a subshell of itself
# and blocks forever (its FIFO never gets a writer).
mkdir -p "$tmp/xt/tests/generic" "$tmp/wd-results"
mkfifo "$tmp/never"
cat > "$tmp/xt/tests/generic/001" <<FAKE
#!/bin/bash
( read -r _ < "$tmp/never" ) &
read -r _ < "$tmp/never"
FAKE
chmod +x "$tmp/xt/tests/generic/001"
(cd "$tmp/xt" && bash -c 'exec bash ./tests/generic/001'; exit 0) &
check=$!
SFS_WATCHDOG_INTERVAL=1 sfs_watchdog "$check" 1 "$tmp/wd-results" 2>/dev/null
# The watchdog returns only once the fake ./check has ended.
kill -0 "$check" 2>/dev/null
expect_status 1 $?
expect_eq "generic/001 1" "$(cat "$tmp/wd-results/glue-timeouts")"
expect_eq 0 "$(ps -eo args | grep -c "^bash ./tests/generic/001$")"

begin "ShippedExpectedFailuresAreWellFormed"
# TEST  REASON, a known test directory, and a reason of a few words.
bad=$(grep -v '^#' "$glue/expected-failures" | grep -v '^$' |
	grep -vE '^(generic|shared)/[0-9]+[[:space:]]+[^[:space:]]+([[:space:]]+[^[:space:]]+){2,}')
expect_eq "" "$bad"

finish
