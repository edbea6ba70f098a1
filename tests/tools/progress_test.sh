#!/bin/bash
# Progress of mkfs.stablefs, fsck.stablefs (--scrub too) and wac --reproduce
# (one line per scenario): on a terminal,
# one line redrawn in place (percent, MiB/s, ETA) and erased before the
# result; nothing when stderr is not a terminal; with -C FD, e2fsck's
# "PHASE DONE TOTAL DEVICE" lines on that descriptor, here a pipe.
#
# usage: progress_test.sh MKFS FSCK WAC
set -u
mkfs=$1
fsck=$2
wac=$3
here=$(dirname "$(readlink -f "$0")")
. "$here/../glue/assert.sh"

tmp=$(mktemp -d /var/tmp/progress-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
img=$tmp/fs.img
esc=$'\e'
cr=$'\r'

# check_progress_lines FILE DEVICE: every line is "1 DONE TOTAL DEVICE",
# TOTAL never changes, DONE never goes back, and the last line is complete.
check_progress_lines() {
	local file=$1 device=$2 n=0 prev=-1 total="" line p d t dev
	while IFS= read -r line; do
		n=$((n + 1))
		if ! [[ "$line" =~ ^([0-9]+)\ ([0-9]+)\ ([0-9]+)\ (.+)$ ]]; then
			fail "line $n is not 'PHASE DONE TOTAL DEVICE': '$line'"
			return
		fi
		p=${BASH_REMATCH[1]} d=${BASH_REMATCH[2]} t=${BASH_REMATCH[3]} dev=${BASH_REMATCH[4]}
		[[ "$p" == 1 && "$dev" == "$device" ]] || fail "line $n: '$line'"
		[[ -z "$total" ]] && total=$t
		[[ "$t" == "$total" ]] || fail "line $n: total changed from $total: '$line'"
		((d >= prev)) || fail "line $n: done went back from $prev: '$line'"
		prev=$d
	done < "$file"
	((n >= 2)) || fail "expected several progress lines, got $n"
	expect_eq "$total" "$prev"
}

begin "MkfsWritesProgressLinesToAPipe"
# fd 3 is the pipe into cat; stdout and stderr go to files (not terminals).
"$mkfs" -C 3 --size 512M "$img" 3>&1 > "$tmp/mkfs.out" 2> "$tmp/mkfs.err" | cat > "$tmp/mkfs.lines"
expect_status 0 "${PIPESTATUS[0]}"
check_progress_lines "$tmp/mkfs.lines" "$img"
expect_eq "" "$(cat "$tmp/mkfs.err")"
expect_contains "$(cat "$tmp/mkfs.out")" "stablefs created on $img"

begin "FsckScrubWritesProgressLinesToAPipe"
"$fsck" --scrub -C3 "$img" 3>&1 > "$tmp/fsck.out" 2> "$tmp/fsck.err" | cat > "$tmp/fsck.lines"
expect_status 0 "${PIPESTATUS[0]}"
check_progress_lines "$tmp/fsck.lines" "$img"
expect_eq "" "$(cat "$tmp/fsck.err")"
expect_contains "$(cat "$tmp/fsck.out")" "$img: clean:"

begin "FsckGoesOnWhenTheProgressReaderIsGone"
# A pipe with no reader left: every progress write gets EPIPE (and SIGPIPE),
# which must not kill fsck halfway (it may be replaying a journal). The
# FIFO is opened read-write first so that opening its write end does not
# block, then that only reader is closed.
mkfifo "$tmp/fifo"
exec {reader}<> "$tmp/fifo"
exec {writer}> "$tmp/fifo"
exec {reader}<&-
"$fsck" -C "$writer" "$img" > "$tmp/gone.out" 2>&1
expect_status 0 $?
exec {writer}>&-
expect_contains "$(cat "$tmp/gone.out")" "$img: clean:"

begin "DashCNeedsADescriptorOpenForWriting"
"$fsck" -C 9 "$img" > "$tmp/bad.out" 2>&1 9>&-
expect_status 16 $?
expect_contains "$(cat "$tmp/bad.out")" "-C 9: no such open file descriptor"
"$fsck" -C 9 "$img" > "$tmp/bad.out" 2>&1 9< "$img"
expect_status 16 $?
expect_contains "$(cat "$tmp/bad.out")" "-C 9: the descriptor is not open for writing"
"$mkfs" -C nine --force "$img" > "$tmp/bad.out" 2>&1
expect_status 2 $?
expect_contains "$(cat "$tmp/bad.out")" "-C needs a file descriptor number, not 'nine'"

begin "NothingOnStderrWhenItIsNotATerminal"
"$fsck" --scrub "$img" > "$tmp/plain.out" 2> "$tmp/plain.err"
expect_status 0 $?
expect_eq "" "$(cat "$tmp/plain.err")"
expect_not_contains "$(cat "$tmp/plain.out")" "$cr"

# on_terminal COMMAND: runs COMMAND on a pseudo-terminal (script(1)) and
# sets out to what it drew there.
on_terminal() {
	script -qec "$1" /dev/null > "$tmp/tty.out" < /dev/null
	expect_status 0 $?
	out=$(cat "$tmp/tty.out")
}

# expect_progress_line PHASE RESULT: out holds a progress line of PHASE with
# percent, MiB/s and ETA, erased before RESULT, which then starts on a
# clean line.
expect_progress_line() {
	expect_contains "$out" "${cr}$1: "
	expect_contains "$out" "% "
	expect_contains "$out" " MiB/s  ETA "
	expect_contains "$out" "${cr}${esc}[K$2"
}

begin "FsckDrawsOneUpdatingLineOnATerminal"
on_terminal "'$fsck' --scrub '$img'"
expect_progress_line "checking and scrubbing" "$img: clean:"

begin "MkfsDrawsOneUpdatingLineOnATerminal"
on_terminal "'$mkfs' --force '$img'"
expect_progress_line "writing metadata" "stablefs created on $img"

begin "QuietDrawsNothingEvenOnATerminal"
on_terminal "'$mkfs' -q --force '$img'"
expect_eq "" "$out"

# wac --reproduce on a plain directory: no mount needed, two short scenarios.
mkdir "$tmp/wac"
begin "WacReproduceDrawsALinePerScenarioOnATerminal"
on_terminal "'$wac' --reproduce --scenarios AB --workers 2 -t 1 '$tmp/wac'"
expect_progress_line "scenario A (2 write() + sync_file_range)" ""
expect_contains "$out" "${cr}scenario B ("
expect_contains "$out" "${cr}${esc}[Kwac --reproduce on $tmp/wac"

begin "WacReproduceIsSilentWhenNotOnATerminal"
"$wac" --reproduce --scenarios AB --workers 2 -t 1 "$tmp/wac" > "$tmp/wac.out" 2> "$tmp/wac.err"
expect_status 0 $?
expect_eq "" "$(cat "$tmp/wac.err")"
expect_not_contains "$(cat "$tmp/wac.out")" "$cr"
expect_contains "$(cat "$tmp/wac.out")" "verdict: no integrity error"

finish
