#!/bin/bash
# Labels and UUIDs: mkfs.stablefs -L/-U (and --label=/--uuid=) write them,
# bad ones are usage errors, stablefs-stat shows them (text and JSON) on a
# live mount, and they survive mount, unmount and a second mount;
# stablefs-tune -L changes the label of an unmounted filesystem only.
#
# usage: label_test.sh MKFS STABLEFS STAT FSCK TUNE DUMP
set -u
mkfs=$1
daemon=$2
stat=$3
fsck=$4
tune=$5
dump=$6
here=$(dirname "$(readlink -f "$0")")
. "$here/../glue/assert.sh"
. "$here/scratch_mount.sh"

scratch_mount_setup label-test
trap 'scratch_mount_release; rm -rf "$tmp"' EXIT

uuid=0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0
label='backup "2026" \ ok'  # a quote and a backslash, for the JSON

begin "MkfsWritesLabelAndUuid"
out=$("$mkfs" --size 32M -L "$label" -U "${uuid^^}" "$img" 2>&1)
expect_status 0 $?
expect_contains "$out" "label:        $label"
expect_contains "$out" "uuid:         $uuid"

begin "MkfsRefusesBadLabelsAndUuids"
out=$("$mkfs" --force -L "$(printf 'x%.0s' {1..64})" "$img" 2>&1)
expect_status 2 $?
expect_contains "$out" "label too long: 64 bytes, at most 63"
out=$("$mkfs" --force --label=$'tab\there' "$img" 2>&1)
expect_status 2 $?
expect_contains "$out" "control characters"
out=$("$mkfs" --force -U 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1fz "$img" 2>&1)
expect_status 2 $?
expect_contains "$out" "invalid UUID '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1fz'"
out=$("$mkfs" --force -L 2>&1)
expect_status 2 $?
expect_contains "$out" "-L needs a label"

begin "StatShowsLabelAndUuidOfALiveMount"
"$daemon" "$img" "$mnt"
expect_status 0 $?
out=$("$stat" "$mnt")
expect_status 0 $?
expect_contains "$out" "  label \"$label\", uuid $uuid"
json=$("$stat" --json "$mnt")
expect_eq "$label|$uuid" "$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["label"] + "|" + d["uuid"])' <<< "$json")"
fusermount3 -u "$mnt"
expect_status 0 $?
wait_released 30 || fail "the daemon did not let go of the image"

begin "LabelSurvivesUnmountAndTheNextMount"
out=$("$fsck" "$img")
expect_status 0 $?
"$daemon" "$img" "$mnt"
expect_status 0 $?
expect_contains "$("$stat" "$mnt")" "  label \"$label\", uuid $uuid"
fusermount3 -u "$mnt"
wait_released 30 || fail "the daemon did not let go of the image"

begin "UnlabelledFilesystemShowsAnEmptyLabel"
out=$("$mkfs" --force --uuid="$uuid" "$img" 2>&1)
expect_status 0 $?
expect_not_contains "$out" "label:"
"$daemon" "$img" "$mnt"
expect_contains "$("$stat" "$mnt")" "  label \"\", uuid $uuid"
expect_contains "$("$stat" --json "$mnt")" '"label":"","uuid":"'"$uuid"'"'
fusermount3 -u "$mnt"
wait_released 30 || fail "the daemon did not let go of the image"

begin "TuneChangesTheLabelAndNothingElse"
before=$("$dump" --json "$img")
"$tune" -L "renamed" "$img"
expect_status 0 $?
after=$("$dump" --json "$img")
expect_eq "renamed" "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["superblock"]["label"])' <<< "$after")"
# Everything but the label and the write sequence stays as it was.
strip='import json,sys; d=json.load(sys.stdin); s=d["superblock"]; s.pop("label"); s.pop("sequence"); print(json.dumps(d, sort_keys=True))'
expect_eq "$(python3 -c "$strip" <<< "$before")" "$(python3 -c "$strip" <<< "$after")"
expect_contains "$("$fsck" "$img")" ": clean:"
"$tune" --label= "$img"
expect_status 0 $?
expect_contains "$("$dump" "$img")" "label:                     "$'\n'

begin "TuneRefusesAMountedFilesystem"
"$daemon" "$img" "$mnt"
out=$("$tune" -L nope "$img" 2>&1)
expect_status 1 $?
expect_contains "$out" "in use (mounted, or being checked)"
fusermount3 -u "$mnt"
wait_released 30 || fail "the daemon did not let go of the image"
expect_not_contains "$("$dump" "$img")" "nope"

begin "TuneRewritesABadPrimaryFromTheBackup"
"$tune" -L first "$img"
dd if=/dev/zero of="$img" bs=1 seek=100 count=8 conv=notrunc status=none  # inside copy A
expect_contains "$("$dump" "$img")" "primary_copy:              INVALID: superblock checksum mismatch"
"$tune" -L second "$img"
expect_status 0 $?
out=$("$dump" "$img")
expect_contains "$out" "primary_copy:              valid"
expect_contains "$out" "label:                     second"
expect_contains "$("$fsck" "$img")" ": clean:"

begin "TuneRefusesWhatIsNotStablefs"
head -c 1M /dev/zero > "$tmp/zero.img"
out=$("$tune" -L x "$tmp/zero.img" 2>&1)
expect_status 1 $?
expect_contains "$out" "not a stablefs image"
out=$("$tune" "$img" 2>&1)
expect_status 2 $?
expect_contains "$out" "nothing to change: give -L LABEL"

finish
