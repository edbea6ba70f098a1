#!/bin/bash
# mkfs.stablefs --preallocate: the data region of the image holds real
# blocks on the host (no hole from data_start to the end), where a default
# image is sparse there; the filesystem is as valid as any (fsck clean, a
# mount writes and reads back); devices and NBD exports are refused.
#
# usage: preallocate_test.sh MKFS FSCK DUMP STABLEFS
set -u
mkfs=$1 fsck=$2 dump=$3 daemon=$4
here=$(dirname "$(readlink -f "$0")")
. "$here/../glue/assert.sh"
. "$here/scratch_mount.sh"

scratch_mount_setup preallocate-test
trap 'scratch_mount_release; rm -rf "$tmp"' EXIT

# data_start IMG: the first data block, from stablefs-dump.
data_start() { "$dump" "$1" | sed -n 's/.*region=data  *start=\([0-9]*\).*/\1/p'; }
# first_hole IMG FROM_BYTE: where the first hole at or after FROM_BYTE starts
# (the file size if there is none).
first_hole() {
	python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print(os.lseek(fd, int(sys.argv[2]), os.SEEK_HOLE))' "$1" "$2"
}

begin "DefaultImageIsSparseInItsDataRegion"
"$mkfs" -q --size 64M "$tmp/sparse.img"
expect_status 0 $?
start=$(data_start "$tmp/sparse.img")
expect_ne "" "$start"
size=$(stat -c %s "$tmp/sparse.img")
hole=$(first_hole "$tmp/sparse.img" $((start * 4096)))
# The check below could not fail if the host filled holes by itself.
[[ $hole -lt $size ]] || fail "no hole in the data region of a default image ($hole of $size)"

begin "PreallocatedImageHasNoHoleInItsDataRegion"
out=$("$mkfs" --size 64M --preallocate "$img" 2>&1)
expect_status 0 $?
expect_contains "$out" "stablefs created on $img"
start=$(data_start "$img")
size=$(stat -c %s "$img")
expect_eq "$size" "$(first_hole "$img" $((start * 4096)))"

begin "PreallocatedImageIsClean"
out=$("$fsck" -n "$img" 2>&1)
expect_status 0 $?
expect_contains "$out" "clean"

begin "PreallocatedImageMountsAndKeepsData"
"$daemon" "$img" "$mnt"
expect_status 0 $?
head -c 300000 /dev/urandom > "$tmp/data"
cp "$tmp/data" "$mnt/f" && sync "$mnt/f"
expect_status 0 $?
scratch_mount_release
"$daemon" "$img" "$mnt"
cmp -s "$tmp/data" "$mnt/f"
expect_status 0 $?
scratch_mount_release
out=$("$fsck" -n --scrub "$img" 2>&1)
expect_status 0 $?

begin "DeviceIsRefused"
out=$("$mkfs" --preallocate /dev/null 2>&1)
expect_status 1 $?
expect_contains "$out" "--preallocate is for image files"

begin "NbdExportIsRefused"
out=$("$mkfs" --preallocate "nbd+unix:///e?socket=$tmp/no.sock" 2>&1)
expect_status 1 $?
expect_contains "$out" "--preallocate is for image files"

finish
