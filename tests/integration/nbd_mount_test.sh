#!/bin/bash
# `mount -t fuse.stablefs` and an fstab line with an NBD URI as the source,
# over a unix socket and over TCP: mount(8) -> mount.fuse3 -> the daemon
# under test, which connects to an nbdkit started here. Each case writes
# and fsyncs a file, unmounts, mounts again the same way, reads it back
# and runs fsck.stablefs --scrub on the export.
#
# mount.fuse3 finds `stablefs` on the shell's built-in PATH, so, like the
# xfstests glue, this runs in a private mount namespace and binds a
# directory holding the daemon under test over /usr/local/sbin there.
#
# usage: nbd_mount_test.sh GLUE_DIR BIN_DIR   (fails when it cannot mount here)
set -u
glue=$1
bin_dir=$2
here=$(dirname "$(readlink -f "$0")")
. "$here/../glue/assert.sh"

if [[ $(id -u) -ne 0 || ! -c /dev/fuse ]] || ! command -v mount.fuse3 >/dev/null ||
	! command -v nbdkit >/dev/null || ! unshare --mount true 2>/dev/null; then
	echo "FAIL: needs root, /dev/fuse, mount.fuse3, nbdkit and mount namespaces" >&2
	exit 1
fi

tmp=$(mktemp -d /var/tmp/nbd-mount-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/mnt"

# A free TCP port on 127.0.0.1 (the kernel picks it; nbdkit binds it a
# moment later, so another process could take it in between: rare, and then
# nbdkit fails to start and the case fails loudly).
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# run_case NAME URI NBDKIT_ARGS...: serves a 256M memory export with nbdkit
# (in the foreground, owned by pid; --exit-with-parent so nothing outlives
# the case), formats it, and mounts it twice inside a private namespace:
# first with mount -t, then through an fstab line (mount -T FILE DIR).
run_case() {
	local uri=$1
	shift
	unshare --mount --propagation private bash -c '
		set -u
		glue=$1 bin=$2 tmp=$3 uri=$4
		shift 4
		. "$glue/lib/mount_helper.sh"
		nbdkit -f --exit-with-parent "$@" memory 256M 2>"$tmp/nbdkit.log" &
		server=$!
		trap "kill -TERM $server 2>/dev/null; wait $server" EXIT
		# nbdkit listens a moment after it starts: retry mkfs until it connects.
		formatted=no
		for _ in $(seq 100); do
			"$bin/mkfs.stablefs" "$uri" >"$tmp/mkfs.log" 2>&1 && { formatted=yes; break; }
			kill -0 $server 2>/dev/null || { echo "nbdkit failed: $(cat "$tmp/nbdkit.log")"; exit 1; }
			sleep 0.1
		done
		[[ $formatted == yes ]] || { echo "mkfs failed: $(cat "$tmp/mkfs.log")"; exit 1; }
		sfs_install_daemon_on_mount_path "$tmp/sbin" "$bin/stablefs" 0 || exit 1
		mount -t fuse.stablefs "$uri" "$tmp/mnt" || { echo "mount -t failed"; exit 1; }
		awk -v m="$tmp/mnt" '\''$2 == m { print "source=" $1; print "type=" $3 }'\'' /proc/self/mounts
		dd if=/dev/urandom of="$tmp/payload" bs=64K count=16 status=none
		dd if="$tmp/payload" of="$tmp/mnt/file" bs=64K conv=fsync status=none ||
			echo "write failed"
		umount "$tmp/mnt"
		printf "%s %s fuse.stablefs defaults 0 0\n" "$uri" "$tmp/mnt" > "$tmp/fstab"
		mount -T "$tmp/fstab" "$tmp/mnt" || { echo "fstab mount failed"; exit 1; }
		cmp -s "$tmp/payload" "$tmp/mnt/file" && echo "content=same"
		umount "$tmp/mnt"
		# The daemon lets go of the export after the unmount returns; fsck
		# waits for it (the host lock named after the URI).
		"$bin/fsck.stablefs" --scrub "$uri" >"$tmp/fsck.log" 2>&1 && echo "fsck=clean" ||
			cat "$tmp/fsck.log"
	' _ "$glue" "$bin_dir" "$tmp" "$uri" "$@" 2>&1
}

# expect_case_passed STATUS URI OUTPUT: run_case mounted URI as the source
# of a fuse.stablefs mount and got the fsync'd bytes back and a clean scrub.
expect_case_passed() {
	expect_status 0 "$1"
	expect_contains "$3" "source=$2"
	expect_contains "$3" "type=fuse.stablefs"
	expect_contains "$3" "content=same"
	expect_contains "$3" "fsck=clean"
	expect_not_contains "$3" "failed"
}

begin "MountTypeFuseStablefsAndFstabTakeAUnixSocketUri"
uri="nbd+unix:///?socket=$tmp/nbd.sock"
out=$(run_case "$uri" -U "$tmp/nbd.sock")
expect_case_passed $? "$uri" "$out"

begin "MountTypeFuseStablefsAndFstabTakeATcpUri"
port=$(free_port)
uri="nbd://127.0.0.1:$port/"
out=$(run_case "$uri" -i 127.0.0.1 -p "$port")
expect_case_passed $? "$uri" "$out"

finish
