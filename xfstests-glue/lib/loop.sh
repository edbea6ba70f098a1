# Loop-device mode (SFS_LOOP=1 or `run --loop`): TEST_DEV and SCRATCH_DEV
# become loop devices over the two images, so xfstests' checks for a block
# device (`_require_block_device`, "require ... to be valid block disk",
# `_require_local_device`) pass and stablefs serves a real block device
# (BLKGETSIZE64, O_DIRECT, O_EXCL). Loop devices are not namespaced: the
# runner detaches the ones it attached, by name, on every exit it sees (a
# SIGKILL leaves them attached; `losetup -j IMAGE` finds them). Sourced by run.

# sfs_check_loop_host: the tools loop mode needs (lib/tools.sh sourced).
sfs_check_loop_host() {
	sfs_require_tools "--loop needs them: apt-get install mount psmisc" losetup fuser
}

# sfs_attach_loop IMAGE: attaches a free loop device to IMAGE (direct I/O,
# so the image file's page cache holds no second copy) and prints it.
sfs_attach_loop() {
	local img=$1 dev
	if ! dev=$(losetup --find --show --direct-io=on "$img" 2>&1); then
		echo "xfstests-glue: losetup --find --show $img failed: $dev" >&2
		return 1
	fi
	[[ -b "$dev" ]] || { echo "xfstests-glue: losetup gave '$dev', not a block device" >&2; return 1; }
	echo "$dev"
}

# sfs_detach_loops DEV...: detaches each DEV still attached (empty names
# are skipped), after a flush of what it buffers.
sfs_detach_loops() {
	local dev
	for dev in "$@"; do
		[[ -n "$dev" && -b "$dev" ]] || continue
		blockdev --flushbufs "$dev" 2>/dev/null
		losetup -d "$dev" 2>/dev/null ||
			echo "xfstests-glue: could not detach $dev (still in use?)" >&2
	done
	return 0
}
