# Finding, stopping and unmounting what the runner started: its ./check
# with every descendant, and the stablefs daemons serving its own images.
# Everything is addressed by PID or by mount point, never by name, so other
# stablefs mounts on the machine are left alone. Sourced by run.

# sfs_descendants PID: every descendant of PID, children before parents'
# siblings are visited (one per line; PID itself excluded).
sfs_descendants() {
	ps -e -o pid=,ppid= | awk -v root="$1" '
		{ kids[$2] = kids[$2] " " $1 }
		END {
			n = split(kids[root], todo, " ")
			while (n > 0) {
				p = todo[n--]
				print p
				m = split(kids[p], more, " ")
				for (i = 1; i <= m; i++) todo[++n] = more[i]
			}
		}'
}

# sfs_kill_tree PID SIGNAL: signal PID and all its descendants.
sfs_kill_tree() {
	local root=$1 sig=$2 p
	for p in $(sfs_descendants "$root") "$root"; do
		kill -s "$sig" "$p" 2>/dev/null
	done
	return 0
}

# sfs_daemon_pids IMAGE...: PIDs of stablefs daemons whose TARGET argument
# is one of IMAGE (which are the runner's own, uniquely named files).
sfs_daemon_pids() {
	local d pid exe img argv
	for d in /proc/[0-9]*; do
		pid=${d#/proc/}
		mapfile -d "" -t argv 2>/dev/null < "$d/cmdline" || continue
		((${#argv[@]} >= 2)) || continue
		exe=${argv[0]##*/}
		[[ "$exe" == stablefs ]] || continue
		for img in "$@"; do
			[[ "${argv[1]}" == "$img" ]] && { echo "$pid"; break; }
		done
	done
}

# sfs_wait_gone SECONDS PID...: true once none of PID exists any more.
sfs_wait_gone() {
	local deadline=$((SECONDS + $1)) p alive
	shift
	while :; do
		alive=0
		for p in "$@"; do
			kill -0 "$p" 2>/dev/null && alive=1
		done
		((alive)) || return 0
		((SECONDS < deadline)) || return 1
		# Polling the PIDs is the only way to wait for processes that are
		# not our children (the daemons re-parent to init).
		sleep 0.2
	done
}

# sfs_mounts_at TARGET...: those TARGETs that are mount points now. Reads
# the mount table only, so a hung FUSE mount cannot block it.
sfs_mounts_at() {
	local t
	for t in "$@"; do
		findmnt -rn -o TARGET | grep -qxF "$t" && echo "$t"
	done
	return 0
}

# sfs_abort_fuse TARGET: abort the FUSE connection behind TARGET through
# fusectl, failing every pending request with ENOTCONN. Used only when a
# test is stuck in the filesystem past its timeout.
sfs_abort_fuse() {
	local target=$1 majmin minor
	majmin=$(findmnt -rn -o TARGET,MAJ:MIN | awk -v t="$target" '$1 == t { print $2; exit }')
	[[ -n "$majmin" ]] || return 1
	minor=${majmin#*:}
	if ! mountpoint -q /sys/fs/fuse/connections; then
		mount -t fusectl fusectl /sys/fs/fuse/connections 2>/dev/null || return 1
	fi
	[[ -w /sys/fs/fuse/connections/$minor/abort ]] || return 1
	echo 1 > "/sys/fs/fuse/connections/$minor/abort"
}

# sfs_unmount_and_stop SECONDS TARGET... -- IMAGE...: unmount every TARGET
# that is mounted (lazily if busy), and every other mount of an IMAGE: a
# second mount of an image shares its daemon, which exits only once the
# last mount is gone (generic/732 mounts SCRATCH_DEV twice). Then wait for
# the daemons of IMAGE to write back and exit; TERM, then KILL, the ones
# that do not.
sfs_unmount_and_stop() {
	local timeout=$1 t img targets=() images=() pids=()
	shift
	while (($#)) && [[ "$1" != -- ]]; do targets+=("$1"); shift; done
	shift
	images=("$@")
	for img in "${images[@]}"; do
		mapfile -t -O "${#targets[@]}" targets < <(findmnt -rn -o TARGET -t fuse.stablefs -S "$img")
	done
	for t in $(sfs_mounts_at "${targets[@]}"); do
		umount "$t" 2>/dev/null || umount -l "$t" 2>/dev/null ||
			echo "xfstests-glue: cannot unmount $t" >&2
	done
	mapfile -t pids < <(sfs_daemon_pids "${images[@]}")
	((${#pids[@]})) || return 0
	sfs_wait_gone "$timeout" "${pids[@]}" && return 0
	echo "xfstests-glue: daemons ${pids[*]} still running ${timeout}s after unmount; terminating" >&2
	kill -TERM "${pids[@]}" 2>/dev/null
	sfs_wait_gone 10 "${pids[@]}" && return 1
	kill -KILL "${pids[@]}" 2>/dev/null
	return 1
}
