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

# scratch_mount_release: unmounts $mnt (lazily if it must), waits for the
# daemon to let go of $img, and kills it if it does not. Only a daemon this
# test started can hold $img: the image lives in the test's own directory.
scratch_mount_release() {
	if grep -qF " $mnt " /proc/mounts; then
		umount "$mnt" 2> /dev/null || umount -l "$mnt"
	fi
	if [[ -e "$img" ]] && ! flock -w 30 "$img" true; then
		local pids
		pids=$(fuser "$img" 2> /dev/null)
		[[ -n "$pids" ]] && kill -9 $pids
	fi
}
