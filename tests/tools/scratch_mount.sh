# A scratch image and mount point for the tools' shell tests, and the
# clean-up that must run however a test ends. Sourced after assert.sh.
#
# scratch_mount_setup NAME: sets tmp (a private directory under /var/tmp),
# img ($tmp/fs.img, not created) and mnt (an empty directory). Fails the
# test at once without root or /dev/fuse.
scratch_mount_setup() {
	if [[ $(id -u) -ne 0 || ! -c /dev/fuse ]]; then
		echo "FAIL: needs root and /dev/fuse" >&2
		exit 1
	fi
	tmp=$(mktemp -d "/var/tmp/$1.XXXXXX")
	chmod 755 "$tmp"  # apt's _apt user reads a .deb from here (package_test)
	img=$tmp/fs.img
	mnt=$tmp/mnt
	mkdir "$mnt"
}

# wait_released [SECONDS]: waits (default 30 s) for the daemon to let go
# of $img after an unmount. On a timeout it says who still holds the image
# and in what state, so a failure under load can be told apart from a hung
# daemon or a slow io_uring teardown, and returns 1.
wait_released() {
	local limit=${1:-30} pid holders
	flock -w "$limit" "$img" true && return 0
	holders=$(fuser "$img" 2> /dev/null)
	echo "the daemon did not let go of $img within $limit s; holders: ${holders:-none}" >&2
	for pid in $holders; do
		ps -o pid,stat,wchan:32,etime,args -p "$pid" >&2
		echo "threads: $(ls "/proc/$pid/task" 2> /dev/null | wc -l); kernel stack:" >&2
		cat "/proc/$pid/stack" >&2 2> /dev/null
	done
	return 1
}

# scratch_mount_release: unmounts $mnt (lazily if it must), waits for the
# daemon to let go of $img, and kills it if it does not. Only a daemon this
# test started can hold $img: the image lives in the test's own directory.
scratch_mount_release() {
	if grep -qF " $mnt " /proc/mounts; then
		umount "$mnt" 2> /dev/null || umount -l "$mnt"
	fi
	if [[ -e "$img" ]] && ! wait_released 30; then
		local pids
		pids=$(fuser "$img" 2> /dev/null)
		[[ -n "$pids" ]] && kill -9 $pids
	fi
}
