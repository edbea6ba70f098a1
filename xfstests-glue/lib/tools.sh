# Finding the stablefs binaries and checking the host. Sourced by run.

# sfs_find_bin_dir REPO_DIR: print the directory holding stablefs,
# mkfs.stablefs and fsck.stablefs. $SFS_BIN_DIR wins; then the repo's
# default build directory; then $PATH (an installed copy).
sfs_find_bin_dir() {
	local repo=$1 dir candidates=()
	if [[ -n "${SFS_BIN_DIR:-}" ]]; then
		candidates=("$SFS_BIN_DIR")
	else
		candidates=("$repo/build/tools")
		local p
		p=$(command -v stablefs 2>/dev/null) && candidates+=("$(dirname "$p")")
	fi
	for dir in "${candidates[@]}"; do
		if [[ -x "$dir/stablefs" && -x "$dir/mkfs.stablefs" && -x "$dir/fsck.stablefs" ]]; then
			(cd "$dir" && pwd -P)
			return 0
		fi
	done
	echo "xfstests-glue: cannot find stablefs, mkfs.stablefs and fsck.stablefs (looked in: ${candidates[*]});" \
	     "build them (cmake --build build) or set SFS_BIN_DIR" >&2
	return 1
}

# sfs_check_xfstests DIR: DIR is an xfstests tree that has been built.
sfs_check_xfstests() {
	local dir=$1
	if [[ ! -x "$dir/check" || ! -d "$dir/tests/generic" ]]; then
		echo "xfstests-glue: $dir is not an xfstests tree (no ./check, no tests/generic)" >&2
		return 1
	fi
	if [[ ! -x "$dir/ltp/fsx" || ! -x "$dir/ltp/fsstress" ]]; then
		echo "xfstests-glue: $dir is not built (no ltp/fsx); run 'make' in it first (see xfstests-glue/README.md)" >&2
		return 1
	fi
}

# sfs_require_tools HINT TOOL...: fails, naming the missing ones and HINT
# (how to install them), unless every TOOL is on PATH.
sfs_require_tools() {
	local hint=$1 missing=() t
	shift
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 || missing+=("$t")
	done
	if ((${#missing[@]})); then
		echo "xfstests-glue: missing tools: ${missing[*]} ($hint)" >&2
		return 1
	fi
}

sfs_check_host() {
	[[ $(id -u) -eq 0 ]] || { echo "xfstests-glue: xfstests must run as root" >&2; return 1; }
	[[ -c /dev/fuse ]] || { echo "xfstests-glue: /dev/fuse is missing (modprobe fuse)" >&2; return 1; }
	sfs_require_tools "apt-get install util-linux fuse3" unshare mount umount findmnt flock mount.fuse3
}

# Tests that switch to the fsgqa users are "not run" without them; say so
# rather than create accounts behind the user's back.
sfs_warn_missing_users() {
	local u missing=()
	for u in fsgqa fsgqa2 123456-fsgqa; do
		id "$u" >/dev/null 2>&1 || missing+=("$u")
	done
	getent group fsgqa >/dev/null 2>&1 || missing+=("group:fsgqa")
	if ((${#missing[@]})); then
		echo "xfstests-glue: note: missing test accounts (${missing[*]}); tests needing them will not run." >&2
		echo "  create them with: useradd -m fsgqa; useradd fsgqa2; useradd --badname 123456-fsgqa" >&2
	fi
}
