#!/bin/bash
# The xfstests glue on a real FUSE mount, without xfstests: the mount
# helper (`mount -t fuse.stablefs` reaching the daemon under test inside the
# runner's private mount namespace), and the runner end to end with a fake
# ./check, including clean-up after an interrupted run.
#
# usage: mount_test.sh GLUE_DIR BIN_DIR      (fails when it cannot mount here)
set -u
glue=$1
bin_dir=$2
here=$(dirname "$(readlink -f "$0")")
. "$here/assert.sh"

if [[ $(id -u) -ne 0 || ! -c /dev/fuse ]] || ! command -v mount.fuse3 >/dev/null ||
	! unshare --mount true 2>/dev/null; then
	echo "FAIL: needs root, /dev/fuse, mount.fuse3 and mount namespaces" >&2
	exit 1
fi

tmp=$(mktemp -d /var/tmp/glue-test.XXXXXX)
chmod 755 "$tmp"  # the fake check reads the mount as another user
trap 'rm -rf "$tmp"' EXIT
"$bin_dir/mkfs.stablefs" --size 64M "$tmp/a.img" > /dev/null || exit 2
mkdir -p "$tmp/mnt"

# Runs in a private namespace of its own, like the runner.
begin "MountTypeFuseStablefsRunsTheDaemonUnderTestAndRemountsAtOnce"
out=$(unshare --mount --propagation private bash -c '
	set -u
	glue=$1 bin=$2 tmp=$3
	. "$glue/lib/mount_helper.sh"
	. "$glue/lib/processes.sh"
	sfs_install_daemon_on_mount_path "$tmp/sbin" "$bin/stablefs" 30 || exit 1
	mount -t fuse.stablefs -o allow_other "$tmp/a.img" "$tmp/mnt" || { echo "first mount failed"; exit 1; }
	echo payload > "$tmp/mnt/file"
	"$glue/df-fuse" -T -P | awk -v m="$tmp/mnt" '\''$7 == m { print "type=" $2 }'\''
	# A remount straight after umount, as _scratch_cycle_mount does.
	umount "$tmp/mnt"
	mount -t fuse.stablefs "$tmp/a.img" "$tmp/mnt" || { echo "remount failed"; exit 1; }
	echo "content=$(cat "$tmp/mnt/file")"
	sfs_unmount_and_stop 60 "$tmp/mnt" -- "$tmp/a.img" || echo "daemon had to be killed"
	echo "left=$(sfs_daemon_pids "$tmp/a.img" | wc -l)"
' _ "$glue" "$bin_dir" "$tmp" 2>&1)
expect_status 0 $?
expect_contains "$out" "type=fuse"
expect_contains "$out" "content=payload"
expect_contains "$out" "left=0"
expect_not_contains "$out" "failed"

# Loop mode: the image behind a loop device, which the daemon opens O_EXCL;
# the shim waits until the previous daemon has let go of it.
begin "LoopModeMountsALoopDeviceAndRemountsAtOnce"
out=$(unshare --mount --propagation private bash -c '
	set -u
	glue=$1 bin=$2 tmp=$3
	. "$glue/lib/mount_helper.sh"
	. "$glue/lib/processes.sh"
	. "$glue/lib/tools.sh"
	. "$glue/lib/loop.sh"
	sfs_check_loop_host || exit 1
	dev=$(sfs_attach_loop "$tmp/a.img") || { echo "attach failed"; exit 1; }
	trap "sfs_detach_loops $dev" EXIT
	echo "is_block=$([[ -b $dev ]] && echo yes)"
	sfs_install_daemon_on_mount_path "$tmp/sbin-loop" "$bin/stablefs" 30 || exit 1
	mount -t fuse.stablefs -o allow_other "$dev" "$tmp/mnt" || { echo "first mount failed"; exit 1; }
	echo loop-payload > "$tmp/mnt/loopfile"
	umount "$tmp/mnt"
	mount -t fuse.stablefs "$dev" "$tmp/mnt" || { echo "remount failed"; exit 1; }
	echo "content=$(cat "$tmp/mnt/loopfile")"
	sfs_unmount_and_stop 60 "$tmp/mnt" -- "$dev" || echo "daemon had to be killed"
	echo "left=$(sfs_daemon_pids "$dev" | wc -l)"
	"$bin/fsck.stablefs" "$dev" > /dev/null && echo "fsck=clean"
' _ "$glue" "$bin_dir" "$tmp" 2>&1)
expect_status 0 $?
expect_contains "$out" "is_block=yes"
expect_contains "$out" "content=loop-payload"
expect_contains "$out" "left=0"
expect_contains "$out" "fsck=clean"
expect_not_contains "$out" "failed"
expect_eq "" "$(losetup -j "$tmp/a.img")"

# A second mount of a mounted image shares its daemon's mount (generic/732):
# the shim does not wait for the image's lock then, and the runner's
# clean-up unmounts every mount of its images, so the daemon exits.
begin "SecondMountSharesTheDaemonAndCleanupUnmountsEveryMount"
mkdir -p "$tmp/mnt2"
out=$(unshare --mount --propagation private bash -c '
	set -u
	glue=$1 bin=$2 tmp=$3
	. "$glue/lib/mount_helper.sh"
	. "$glue/lib/processes.sh"
	sfs_install_daemon_on_mount_path "$tmp/sbin-share" "$bin/stablefs" 30 "$tmp/share.log" || exit 1
	mount -t fuse.stablefs -o allow_other "$tmp/a.img" "$tmp/mnt" || { echo "first mount failed"; exit 1; }
	start=$SECONDS
	mount -t fuse.stablefs -o allow_other "$tmp/a.img" "$tmp/mnt2" || { echo "second mount failed"; exit 1; }
	# The shim would wait 30 s for the lock of an image that is in use.
	(( SECONDS - start < 10 )) && echo "second mount at once"
	echo shared > "$tmp/mnt/sharedfile"
	echo "content=$(cat "$tmp/mnt2/sharedfile")"
	echo "daemons=$(sfs_daemon_pids "$tmp/a.img" | wc -l)"
	sfs_unmount_and_stop 30 "$tmp/mnt" -- "$tmp/a.img" || echo "daemon had to be killed"
	echo "left=$(sfs_daemon_pids "$tmp/a.img" | wc -l)"
	echo "mounts=$(findmnt -rn -S "$tmp/a.img" | wc -l)"
' _ "$glue" "$bin_dir" "$tmp" 2>&1)
expect_status 0 $?
expect_contains "$out" "content=shared"
expect_contains "$out" "daemons=1"
expect_contains "$out" "left=0"
expect_contains "$out" "mounts=0"
expect_not_contains "$out" "failed"
expect_not_contains "$out" "killed"
expect_contains "$out" "second mount at once"
expect_contains "$(cat "$tmp/share.log" 2>/dev/null)" "shares that mount"

# The daemon's log lines (here: the one FS_IOC_SHUTDOWN writes) go to the
# runner's log file, not to the stderr of the program that mounted it,
# which under xfstests is the test's output (generic/392 and the other
# shutdown tests failed on those lines).
begin "DaemonLogGoesToTheGlueLogNotToTheMountersOutput"
out=$(unshare --mount --propagation private bash -c '
	set -u
	glue=$1 bin=$2 tmp=$3
	. "$glue/lib/mount_helper.sh"
	. "$glue/lib/processes.sh"
	sfs_install_daemon_on_mount_path "$tmp/sbin-log" "$bin/stablefs" 30 "$tmp/daemon.log" || exit 1
	mount -t fuse.stablefs -o allow_other "$tmp/a.img" "$tmp/mnt" || { echo "mount failed"; exit 1; }
	python3 -c "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.ioctl(fd, 0x8004587d, b\"\\0\" * 4)" "$tmp/mnt" ||
		echo "shutdown ioctl failed"
	sfs_unmount_and_stop 60 "$tmp/mnt" -- "$tmp/a.img" || echo "daemon had to be killed"
' _ "$glue" "$bin_dir" "$tmp" 2>&1)
expect_status 0 $?
expect_not_contains "$out" "failed"
expect_not_contains "$out" "shut down"
expect_contains "$(cat "$tmp/daemon.log" 2>/dev/null)" "shut down (FS_IOC_SHUTDOWN)"

begin "MountHelperRefusesToTouchTheHostNamespace"
# Only meaningful when this test itself runs in the host's namespace.
. "$glue/lib/mount_helper.sh"
if ! sfs_in_private_mount_ns; then
	sfs_install_daemon_on_mount_path "$tmp/sbin-host" "$bin_dir/stablefs" 0 2>/dev/null
	expect_status 1 $?
	expect_eq "" "$(findmnt -rn -o TARGET | grep -xF /usr/local/sbin)"
fi

# A fake xfstests tree: ./check mounts TEST_DEV the way xfstests does,
# writes a file, writes check.log, and leaves the test fs mounted.
fake=$tmp/xfstests
mkdir -p "$fake/tests/generic" "$fake/ltp"
printf '#!/bin/sh\nexit 0\n' > "$fake/ltp/fsx"
cp "$fake/ltp/fsx" "$fake/ltp/fsstress"
cat > "$fake/check" <<'CHECK'
#!/bin/bash
. "$HOST_OPTIONS"
mount -t "$FSTYP$FUSE_SUBTYP" $TEST_FS_MOUNT_OPTS "$TEST_DEV" "$TEST_DIR" || exit 1
$DF_PROG | awk -v d="$TEST_DEV" '$1 == d { print "df-type " $2 }'
echo data > "$TEST_DIR/file" || exit 1
# Tests run commands as the fsgqa users: another user must reach the mount.
runuser -u nobody -- cat "$TEST_DIR/file" > /dev/null && echo "other user reads the test fs"
if [[ "${1:-}" == hang ]]; then
	# Signal readiness, then block until killed (the FIFO never gets a writer).
	echo ready > "$FAKE_READY"
	read -r _ < "$FAKE_NEVER"
fi
echo "check args: $*"
mkdir -p "$RESULT_BASE/generic"
printf '\nKernel version: x\nRan: generic/001 generic/002\nNot run: generic/002\nPassed all 2 tests\n' >> "$RESULT_BASE/check.log"
echo "not for fuse" > "$RESULT_BASE/generic/002.notrun"
CHECK
chmod +x "$fake/check" "$fake/ltp/fsx" "$fake/ltp/fsstress"
export SFS_BIN_DIR=$bin_dir SFS_IMAGE_SIZE=64M SFS_WORK_DIR=$tmp/work
export SFS_EXPECTED=$here/fixtures/expected-failures
# Daemons serving an image under the runner's work dir.
count_daemons() {
	ps -eo args | awk -v w="$tmp/work/" '$1 ~ /(^|\/)stablefs$/ && index($2, w) == 1' | wc -l
}

begin "RunnerFormatsMountsChecksAndSummarizes"
out=$("$glue/run" "$fake" 2>&1)
expect_status 0 $?
expect_contains "$out" "df-type fuse"
expect_contains "$out" "other user reads the test fs"
expect_contains "$out" "ran 2: passed 1, failed 0, not run 1"
expect_contains "$out" "test.img: clean"
expect_contains "$out" "scratch.img: clean"
expect_eq "" "$(find "$tmp/work" -name '*.img')"
expect_eq 0 "$(count_daemons)"

begin "RunnerInLoopModeKeepsOutTheTestsThatOverwriteTheScratchDevice"
out=$(SFS_LOOP=1 "$glue/run" "$fake" 2>&1)
expect_status 0 $?
expect_contains "$out" "check args: -E $(readlink -f "$glue")/loop-excluded"
expect_contains "$out" "ran 2: passed 1, failed 0, not run 1"
out=$("$glue/run" "$fake" 2>&1)
expect_not_contains "$out" "loop-excluded"

begin "RunnerCleansUpAfterSigterm"
mkfifo "$tmp/ready" "$tmp/never"
FAKE_READY=$tmp/ready FAKE_NEVER=$tmp/never "$glue/run" "$fake" hang > "$tmp/run.out" 2>&1 &
runner=$!
read -r _ < "$tmp/ready"
# The test fs is mounted and its daemon serves it: interrupt now.
expect_eq 1 "$(count_daemons)"
kill -TERM "$runner"
wait "$runner"
expect_ne 0 $?
expect_eq 0 "$(count_daemons)"
expect_eq "" "$(find "$tmp/work" -name '*.img')"
expect_eq 0 "$(ps -eo pid,args | awk -v f="$fake/check" '$3 == f' | wc -l)"

finish
