#!/bin/bash
# Every binary answers --version/-V (project version and the libraries it
# runs on) and --help on stdout with exit 0, and refuses an unknown option
# with its usage exit code and a message on stderr.
#
# usage: cli_test.sh VERSION FUSE_VERSION URING_VERSION XXHASH_VERSION \
#                    BOOST_VERSION STABLEFS MKFS FSCK STAT WAC DUMP TUNE
# (versions as CMake's project(), pkg-config and find_package found them)
set -u
version=$1 fuse_version=$2 uring_version=$3 xxhash_version=$4 boost_version=$5
stablefs=$6 mkfs=$7 fsck=$8 stat=$9 wac=${10} dump=${11} tune=${12}
here=$(dirname "$(readlink -f "$0")")
. "$here/../glue/assert.sh"

tmp=$(mktemp -d /var/tmp/cli-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# run BIN ARGS...: sets out, err, status.
run() {
	"$@" > "$tmp/out" 2> "$tmp/err"
	status=$?
	out=$(cat "$tmp/out")
	err=$(cat "$tmp/err")
}

# check_binary NAME PATH USAGE_EXIT LIBRARY_LINES...
check_binary() {
	local name=$1 bin=$2 usage_exit=$3
	shift 3
	local expected
	expected="$name (stablefs) $version"
	for lib in "$@"; do expected+=$'\n'"  $lib"; done

	begin "${name}_VersionNamesProjectAndLibraries"
	run "$bin" --version
	expect_status 0 "$status"
	expect_eq "$expected" "$out"
	expect_eq "" "$err"

	begin "${name}_ShortVersionIsTheSame"
	run "$bin" -V
	expect_status 0 "$status"
	expect_eq "$expected" "$out"

	begin "${name}_HelpOnStdout"
	run "$bin" --help
	expect_status 0 "$status"
	expect_eq "usage: $name" "$(head -c $((${#name} + 7)) <<< "$out")"
	expect_contains "$out" "--version"
	expect_eq "" "$err"

	begin "${name}_UnknownOptionIsAUsageError"
	run "$bin" --no-such-option
	expect_status "$usage_exit" "$status"
	expect_contains "$err" "no-such-option"
	expect_eq "" "$out"
}

check_binary stablefs "$stablefs" 2 "libfuse $fuse_version" \
	"liburing $uring_version (built against)" "xxHash $xxhash_version" \
	"Boost.Interprocess $boost_version (header-only)"
check_binary mkfs.stablefs "$mkfs" 2 "liburing $uring_version (built against)" \
	"xxHash $xxhash_version"
# fsck's usage exit is e2fsck's 16.
check_binary fsck.stablefs "$fsck" 16 "liburing $uring_version (built against)" \
	"xxHash $xxhash_version"
check_binary stablefs-stat "$stat" 2 "Boost.Interprocess $boost_version (header-only)" \
	"xxHash $xxhash_version"
check_binary wac "$wac" 2 "Boost.Interprocess $boost_version (header-only)" "xxHash $xxhash_version"
check_binary stablefs-dump "$dump" 2 "liburing $uring_version (built against)" \
	"xxHash $xxhash_version"
check_binary stablefs-tune "$tune" 2 "liburing $uring_version (built against)" \
	"xxHash $xxhash_version"

finish
