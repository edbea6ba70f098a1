# The TEST and SCRATCH images: created and formatted before ./check (xfstests
# never runs mkfs for FSTYP=fuse), checked with fsck after it. Sourced by run.

# sfs_make_image BIN_DIR IMAGE SIZE: a fresh stablefs in a new sparse file.
# The image must not exist: the runner only formats files it created.
sfs_make_image() {
	local bin=$1 img=$2 size=$3 out
	if [[ -e "$img" ]]; then
		echo "xfstests-glue: refusing to format existing $img" >&2
		return 1
	fi
	if ! out=$("$bin/mkfs.stablefs" --size "$size" "$img" 2>&1); then
		echo "xfstests-glue: mkfs.stablefs --size $size $img failed:" >&2
		echo "$out" >&2
		return 1
	fi
}

# sfs_fsck_image BIN_DIR IMAGE LOG: full check plus checksum scrub of an
# unmounted image (no repair); the output goes to LOG. Returns fsck's exit status.
sfs_fsck_image() {
	local bin=$1 img=$2 log=$3
	"$bin/fsck.stablefs" --scrub "$img" > "$log" 2>&1
}
