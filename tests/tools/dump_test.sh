#!/bin/bash
# stablefs-dump on real images: the superblock, geometry and journal of a
# fresh filesystem; inodes, directories and extents (with checksums) of
# files written through a mount; a flipped data byte shown as a checksum
# MISMATCH; a journal left by a killed daemon shown as transactions to
# replay without writing the image; --json that parses and says what the
# text says; errors for what is not there.
#
# usage: dump_test.sh DUMP MKFS STABLEFS
set -u
dump=$1
mkfs=$2
daemon=$3
here=$(dirname "$(readlink -f "$0")")
. "$here/../glue/assert.sh"
. "$here/scratch_mount.sh"

scratch_mount_setup dump-test
trap 'scratch_mount_release; rm -rf "$tmp"' EXIT

# json EXPR: evaluates EXPR (Python, over the parsed object d) on stdin's JSON.
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

"$mkfs" -q --size 64M -L dumped -U 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0 "$img" || exit 2

begin "FilesystemViewShowsSuperblockGeometryAndJournal"
out=$("$dump" "$img")
expect_status 0 $?
expect_contains "$out" "label:                     dumped"
expect_contains "$out" "uuid:                      0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
expect_contains "$out" "state:                     clean"
expect_contains "$out" "total_blocks:              16384"
expect_contains "$out" "primary_copy:              valid"
expect_contains "$out" "incompat:                  0x00000004 (lazy_init)"
expect_contains "$out" "transactions_to_replay:    0"
expect_contains "$out" "region=journal  start="

begin "JsonViewParsesAndMatchesTheText"
j=$("$dump" --json "$img")
expect_status 0 $?
fields='d["superblock"]["label"], d["geometry"]["total_blocks"],
        len(d["geometry"]["regions"]), d["journal"]["transactions_to_replay"]'
expect_eq "dumped 16384 7 0" "$(json "$fields" <<< "$j")"

# Files written through a real mount, unmounted cleanly.
"$daemon" "$img" "$mnt" || exit 2
mkdir "$mnt/sub"
seq 1 3000 > "$mnt/sub/numbers"   # 13893 bytes: 4 blocks
ln -s /a/target "$mnt/link"
fusermount3 -u "$mnt"
wait_released 30 || fail "the daemon did not let go of the image"

begin "DirectoryByPathListsItsEntries"
out=$("$dump" --dir / "$img")
expect_status 0 $?
expect_contains "$out" "type=directory  cookie="
expect_contains "$out" "name=sub"
expect_contains "$out" "type=symlink"
expect_contains "$out" "name=link"
expect_eq "numbers" "$("$dump" --json --dir /sub "$img" | json 'd["entries"][0]["name"]')"

begin "InodeByPathAndByNumber"
out=$("$dump" --inode /sub/numbers "$img")
expect_status 0 $?
expect_contains "$out" "type:                      file"
expect_contains "$out" "size:                      13893"
expect_contains "$out" "blocks:                    4"
ino=$("$dump" --json --inode /sub/numbers "$img" | json 'd["inode"]')
expect_eq "$out" "$("$dump" --inode "$ino" "$img")"
expect_contains "$("$dump" --inode /link "$img")" "target:                    /a/target"
expect_contains "$("$dump" --inode 4000 "$img")" "type:                      free"

begin "ExtentsShowEveryBlocksChecksums"
out=$("$dump" --extents /sub/numbers "$img")
expect_status 0 $?
expect_contains "$out" "extents: 1"
expect_contains "$out" "blocks: 4"
expect_eq 4 "$(grep -c 'verdict=ok' <<< "$out")"
expect_contains "$out" "checksum_mismatches:       0"

begin "AFlippedDataByteIsAMismatch"
phys=$("$dump" --json --extents /sub/numbers "$img" | json 'd["blocks"][1]["physical"]')
printf 'X' | dd of="$img" bs=1 seek=$((phys * 4096 + 10)) conv=notrunc status=none
out=$("$dump" --extents /sub/numbers "$img")
expect_status 0 $?
expect_contains "$out" "logical=1  physical=$phys  recorded="
expect_eq 1 "$(grep -c 'verdict=MISMATCH' <<< "$out")"
expect_contains "$out" "checksum_mismatches:       1"

begin "UnreplayedJournalIsShownAndTheImageIsNotWritten"
"$mkfs" -q --force "$img" || exit 2
"$daemon" "$img" "$mnt" || exit 2  # returns once the mount is live
# The process holding our private image is the daemon this test started.
daemon_pid=$(fuser "$img" 2> /dev/null | tr -d ' ')
expect_ne "" "$daemon_pid"
# (Should the test end here, scratch_mount_release kills it the same way.)
mkdir "$mnt/d1" "$mnt/d2" && echo x > "$mnt/d1/f"
# fsync commits the journal transaction that holds the mkdirs too.
python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$mnt/d1/f"
expect_status 0 $?
kill -9 "$daemon_pid"
umount -l "$mnt"
# The kernel closes the dead daemon's files; then nobody holds the image.
wait_released 30 || fail "the daemon did not let go of the image"
before=$(sha256sum < "$img")
out=$("$dump" "$img")
expect_status 0 $?
expect_contains "$out" "state:                     mounted"
expect_not_contains "$out" "transactions_to_replay:    0"
# The dump sees the replayed filesystem (as a mount would) ...
expect_contains "$("$dump" --dir / "$img")" "name=d2"
# ... and wrote nothing.
expect_eq "$before" "$(sha256sum < "$img")"

begin "ErrorsSayWhatIsMissing"
out=$("$dump" --inode /no/such "$img" 2>&1)
expect_status 1 $?
expect_contains "$out" "/no/such: no entry 'no'"
out=$("$dump" --dir /d1/f "$img" 2>&1)
expect_status 1 $?
expect_contains "$out" "is not a directory"
out=$("$dump" --inode 999999 "$img" 2>&1)
expect_status 1 $?
expect_contains "$out" "inode 999999 is outside 1.."
head -c 1M /dev/zero > "$tmp/zero.img"
out=$("$dump" "$tmp/zero.img" 2>&1)
expect_status 1 $?
expect_contains "$out" "not a stablefs image"
out=$("$dump" --inode 1 --dir 1 "$img" 2>&1)
expect_status 2 $?

begin "AboveTheHighWaterMarksIsFreeNotCorrupt"
# 1 GiB: 65535 inodes, of which mkfs initialises the first 15360 (lazy
# initialisation, core/FORMAT.md); the table above was never written.
"$mkfs" -q --size 1G "$tmp/lazy.img" || fail "mkfs of a 1 GiB image failed"
out=$("$dump" "$tmp/lazy.img" 2>&1)
expect_status 0 $?
expect_contains "$out" "lazy_init:                 1"
expect_contains "$out" "inode_high_water_mark:     15360"
out=$("$dump" --inode 60000 "$tmp/lazy.img" 2>&1)
expect_status 0 $?
expect_contains "$out" "type:                      free"
expect_contains "$out" "in_use_in_bitmap:          no"

finish
