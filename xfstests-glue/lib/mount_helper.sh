# Making `mount -t fuse.stablefs IMAGE DIR` run the stablefs under test.
#
# mount(8) runs mount.fuse3 with an empty environment, and mount.fuse3 runs
# `/bin/sh -c 'stablefs IMAGE DIR -o OPTS'`, so the daemon is looked up in
# the shell's built-in PATH (/usr/local/sbin first), never in ours. Instead
# of installing anything on the host, the runner works in a private mount
# namespace and bind-mounts over /usr/local/sbin a directory holding the
# same entries plus `stablefs`. Nobody outside the namespace sees that, or
# the test mounts, and concurrent runs with different builds do not clash.
# Sourced by run.

# True inside a mount namespace other than init's.
sfs_in_private_mount_ns() {
	[[ "$(readlink /proc/self/ns/mnt)" != "$(readlink /proc/1/ns/mnt)" ]]
}

# sfs_reexec_in_private_ns ARGS...: re-run the calling script in a new mount
# namespace whose mounts do not propagate back to the host. Does not return.
sfs_reexec_in_private_ns() {
	export SFS_GLUE_IN_NS=1
	exec unshare --mount --propagation private -- "$@"
}

# sfs_write_daemon_shim OUT DAEMON WAIT_SECONDS [LOG]: OUT becomes the `stablefs`
# that mount.fuse3 finds. With WAIT_SECONDS > 0 it first waits for the
# image's lock, so a mount issued right after an umount does not fail
# while the previous daemon is still writing back (see README: "remount
# right after umount"); not when the image is mounted, since the daemon
# then shares the live mount instead. A block device (loop mode) has no
# such lock: the daemon opens it O_EXCL, so the shim waits until no
# process has it open.
# With LOG, the daemon's stderr (its log lines: shutdown, replay, errors)
# is appended to LOG instead of going where mount(8)'s stderr goes, which
# under xfstests is the test's output: a kernel filesystem says such
# things in the kernel log, never in the output of the program that
# mounted it.
sfs_write_daemon_shim() {
	local out=$1 daemon=$2 wait=$3 log=${4:-}
	local redirect=""
	[[ -n "$log" ]] && redirect="2>>$log"
	if [[ "$wait" -gt 0 || -n "$log" ]]; then
		cat > "$out" <<SHIM
#!/bin/sh
# Written by xfstests-glue/run; lives only inside its mount namespace.
# A remount starts no daemon: the running one holds the lock, so don't wait.
case "\$*" in
*remount*) ;;
*) if [ $wait -eq 0 ]; then
	:
   elif findmnt -rn -t fuse.stablefs -S "\$1" >/dev/null 2>&1; then
	# Mounted and live: the daemon shares that mount (generic/732's
	# second mount), so there is no daemon to wait for.
	:
   elif [ -b "\$1" ]; then
	n=0
	while fuser -s "\$1" 2>/dev/null && [ \$n -lt $((wait * 10)) ]; do
		sleep 0.1
		n=\$((n + 1))
	done
   elif [ -f "\$1" ]; then
	flock -w $wait "\$1" true
   fi ;;
esac
exec $daemon "\$@" $redirect
SHIM
		chmod 755 "$out"
	else
		ln -sfn "$daemon" "$out"
	fi
}

# sfs_install_daemon_on_mount_path SBIN_DIR DAEMON WAIT_SECONDS [LOG]: populate
# SBIN_DIR and bind it over /usr/local/sbin (SBIN_DIR.orig keeps the
# original reachable). Only inside a private mount
# namespace: outside one, this would change the host for everybody.
sfs_install_daemon_on_mount_path() {
	local sbin=$1 daemon=$2 wait=$3 log=${4:-} f
	if ! sfs_in_private_mount_ns; then
		echo "xfstests-glue: refusing to bind over /usr/local/sbin outside a private mount namespace" >&2
		return 1
	fi
	mkdir -p "$sbin" "$sbin.orig" /usr/local/sbin || return 1
	# The entries must point at the original directory, which the overlay
	# is about to hide: keep it reachable through a second bind mount.
	mount --bind /usr/local/sbin "$sbin.orig" || return 1
	for f in "$sbin.orig"/* "$sbin.orig"/.[!.]*; do
		[[ -e "$f" || -L "$f" ]] && ln -sfn "$f" "$sbin/"
	done
	sfs_write_daemon_shim "$sbin/stablefs" "$daemon" "$wait" "$log" || return 1
	mount --bind "$sbin" /usr/local/sbin || return 1
	# What mount.fuse3 will actually run, resolved the way it resolves it.
	local found
	found=$(env -i /bin/sh -c 'command -v stablefs')
	if [[ "$found" != /usr/local/sbin/stablefs ]]; then
		echo "xfstests-glue: mount.fuse3 would run '$found', not the daemon under test" >&2
		return 1
	fi
}
