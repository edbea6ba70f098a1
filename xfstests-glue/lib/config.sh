# Rendering local.config from local.config.in. Sourced by run and by the
# glue's tests.

# xfstests splits its configuration on whitespace and expands it unquoted,
# so a path with a space or a shell metacharacter would break it in ways
# that are hard to trace; refuse such paths up front.
sfs_check_plain_path() {
	local name=$1 value=$2
	if [[ -z "$value" || ! "$value" =~ ^[A-Za-z0-9_./+:@%-]+$ ]]; then
		echo "xfstests-glue: $name '$value' must be non-empty and contain no spaces or shell metacharacters" >&2
		return 1
	fi
}

# Mount options are one comma-separated list; the same restriction applies,
# plus "=" and "," which options legitimately use.
sfs_check_mount_opts() {
	if [[ -z "$1" || ! "$1" =~ ^[A-Za-z0-9_./+:@%=,-]+$ ]]; then
		echo "xfstests-glue: mount options '$1' must be a comma-separated list without spaces" >&2
		return 1
	fi
}

# sfs_render_config TEMPLATE OUT TEST_IMG TEST_DIR SCRATCH_IMG SCRATCH_MNT
#                   MOUNT_OPTS RESULT_BASE GLUE_DIR
sfs_render_config() {
	local template=$1 out=$2
	local test_img=$3 test_dir=$4 scratch_img=$5 scratch_mnt=$6
	local mount_opts=$7 result_base=$8 glue_dir=$9
	local v
	for v in test_img test_dir scratch_img scratch_mnt result_base glue_dir; do
		sfs_check_plain_path "$v" "${!v}" || return 1
	done
	sfs_check_mount_opts "$mount_opts" || return 1
	if [[ "$test_img" == "$scratch_img" || "$test_dir" == "$scratch_mnt" ]]; then
		echo "xfstests-glue: TEST and SCRATCH must use different images and directories" >&2
		return 1
	fi
	# '|' cannot occur in the values (checked above), so it is a safe
	# sed delimiter.
	sed -e "s|@TEST_IMG@|$test_img|g" \
	    -e "s|@TEST_DIR@|$test_dir|g" \
	    -e "s|@SCRATCH_IMG@|$scratch_img|g" \
	    -e "s|@SCRATCH_MNT@|$scratch_mnt|g" \
	    -e "s|@MOUNT_OPTS@|$mount_opts|g" \
	    -e "s|@RESULT_BASE@|$result_base|g" \
	    -e "s|@GLUE_DIR@|$glue_dir|g" \
	    "$template" > "$out" || return 1
	if grep -q '@[A-Z_]*@' "$out"; then
		echo "xfstests-glue: unreplaced placeholder in $out" >&2
		return 1
	fi
}
