#!/bin/bash
# Issue 13 item 8: mkfs, mount and fsck cost does not grow with the device
# (lazy initialisation, core/FORMAT.md). On a sparse 15 TiB image file (the
# largest a file on ext4 can be is just under 16 TiB): mkfs, mount + write
# and fsync a file + unmount, fsck; each phase must finish within LIMIT
# seconds and mkfs must leave under 512 MiB allocated. The times are
# printed. A mkfs that writes the whole inode table (270 GB here) fails the
# limit long before it could fill the disk.
#
# usage: big_image_test.sh MKFS STABLEFS FSCK [LIMIT_SECONDS]
set -u
mkfs=$1
daemon=$2
fsck=$3
limit=${4:-30}
here=$(dirname "$(readlink -f "$0")")
. "$here/../glue/assert.sh"
. "$here/scratch_mount.sh"

scratch_mount_setup big-image-test
trap 'scratch_mount_release; rm -rf "$tmp"' EXIT
trap 'exit 1' TERM INT

# The sparse file needs little space, but the journal, the first inode
# table blocks and the test file are real: 1 GiB free is plenty.
free_kib=$(df --output=avail -k "$tmp" | tail -1)
if ((free_kib < 1048576)); then
	echo "FAIL: $tmp has $((free_kib / 1024)) MiB free, needs 1 GiB" >&2
	exit 1
fi
if ! truncate -s 15T "$img"; then
	echo "FAIL: cannot make a sparse 15 TiB file in $tmp (its filesystem's file size limit?)" >&2
	exit 1
fi

# phase NAME COMMAND...: runs it under the limit, its output into
# $tmp/phase.out (never a pipe: the daemon keeps its stdout open), and
# prints its time.
phase() {
	local name=$1 start end status
	shift
	start=$(date +%s%N)
	timeout "$limit" "$@" > "$tmp/phase.out" 2>&1
	status=$?
	cat "$tmp/phase.out"
	end=$(date +%s%N)
	printf '%-28s %6.2f s\n' "$name" "$(((end - start) / 1000000))e-3"
	return $status
}

begin "MkfsOfA15TiBSparseImageIsFast"
out=$(phase "mkfs.stablefs 15 TiB" "$mkfs" -q "$img" 2>&1)
expect_status 0 $?
echo "$out"
used_kib=$(du -k "$img" | cut -f1)
echo "allocated after mkfs: $((used_kib / 1024)) MiB"
((used_kib < 524288)) || fail "mkfs allocated $((used_kib / 1024)) MiB, expected under 512"

begin "MountWriteUnmountIsFast"
out=$(phase "mount" "$daemon" "$img" "$mnt" 2>&1)
expect_status 0 $?
echo "$out"
grep -qF " $mnt " /proc/mounts || fail "not mounted"
out=$(phase "write 64 MiB + fsync" dd if=/dev/urandom of="$mnt/file" bs=1M count=64 conv=fsync status=none 2>&1)
expect_status 0 $?
echo "$out"
sum=$(sha256sum < "$mnt/file")
out=$(phase "unmount" fusermount3 -u "$mnt" 2>&1)
expect_status 0 $?
echo "$out"
wait_released 30 || fail "the daemon did not let go of the image"

begin "FsckOfTheImageIsFastAndClean"
out=$(phase "fsck.stablefs --scrub" "$fsck" --scrub "$img" 2>&1)
expect_status 0 $?
echo "$out"
expect_contains "$out" "0 errors"

begin "TheFileIsThereAfterARemount"
"$daemon" "$img" "$mnt" || fail "remount failed"
expect_eq "$sum" "$(sha256sum < "$mnt/file")"
fusermount3 -u "$mnt" || fail "second unmount failed"

finish
