#!/bin/bash
# The man pages: each one passes `mandoc -Tlint -Wwarning` with nothing to
# say, renders, names its own page, and `cmake --install` puts it where
# man(1) finds it.
#
# usage: man_test.sh BUILD_DIR PAGE...      (PAGE: a configured page, e.g.
#                                            BUILD_DIR/man/stablefs.8)
set -u
build=$1
shift
here=$(dirname "$(readlink -f "$0")")
. "$here/../glue/assert.sh"

if ! command -v mandoc > /dev/null; then
	echo "FAIL: mandoc is not installed (bash scripts/deps.sh installs it)" >&2
	exit 1
fi
tmp=$(mktemp -d /var/tmp/man-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

for page in "$@"; do
	name=$(basename "$page")        # stablefs-stat.8
	title=${name%.*}                # stablefs-stat
	section=${name##*.}             # 8
	begin "${name}_LintsWithoutWarnings"
	lint=$(mandoc -Tlint -Wwarning "$page" 2>&1)
	expect_status 0 $?
	expect_eq "" "$lint"

	begin "${name}_RendersItsOwnName"
	text=$(mandoc -Tascii "$page" | col -b)
	expect_contains "$text" "${title^^}($section)"
	expect_contains "$text" "NAME"$'\n'"     $title "
	expect_not_contains "$text" "@PROJECT_VERSION@"
done

begin "CmakeInstallPutsEveryPageWhereManFindsIt"
cmake --install "$build" --prefix "$tmp/prefix" > "$tmp/install.log" 2>&1
expect_status 0 $?
for page in "$@"; do
	name=$(basename "$page")
	found=$(MANPATH="$tmp/prefix/share/man" man -w "${name##*.}" "${name%.*}" 2>&1)
	# Installed gzip'd (Debian policy), and man reads it so.
	expect_eq "$tmp/prefix/share/man/man${name##*.}/$name.gz" "$found"
	expect_eq "$(cat "$page")" "$(gzip -dc "$found")"
done

finish
