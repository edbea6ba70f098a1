#!/bin/bash
# The Debian package end to end, as a user would use it: build the .deb
# with scripts/package.sh, `apt-get install ./stablefs_*.deb`, make a
# filesystem with the installed mkfs.stablefs, mount it with `mount -t
# fuse.stablefs -o ...` and from an fstab line, write and read a file,
# umount, fsck, then `apt-get purge stablefs` and check that nothing it
# installed is left.
#
# Installs into /usr on this machine for a few seconds, so ctest runs it
# alone (RUN_SERIAL); the other tests use build/ paths anyway. Refuses to
# start if a stablefs package is already installed: purging it at the end
# would remove what someone else put there.
#
# usage: package_test.sh SOURCE_DIR BUILD_DIR VERSION
set -u
src=$1
build=$2
version=$3
here=$(dirname "$(readlink -f "$0")")
. "$here/../glue/assert.sh"
. "$here/scratch_mount.sh"

binaries=(stablefs mkfs.stablefs fsck.stablefs stablefs-stat stablefs-dump stablefs-tune wac)
apt_opts=(-y -q -o DPkg::Lock::Timeout=120)  # another apt on this machine: wait

if ! command -v mount.fuse3 > /dev/null; then
	echo "FAIL: needs mount.fuse3 (fuse3)" >&2
	exit 1
fi
if dpkg-query -W -f='${Status}' stablefs 2> /dev/null | grep -q "install ok installed"; then
	echo "FAIL: a stablefs package is already installed; this test would purge it" >&2
	exit 1
fi

scratch_mount_setup package-test  # $tmp is readable by apt's _apt user
installed_by_us=0

cleanup() {
	scratch_mount_release
	if ((installed_by_us)) && dpkg-query -W stablefs > /dev/null 2>&1; then
		apt-get purge "${apt_opts[@]}" stablefs > /dev/null 2>&1
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

# mounted_source: the source and type /proc/mounts shows for $mnt.
mounted_source() { findmnt -rn -o SOURCE,FSTYPE --mountpoint "$mnt"; }

# unmount_and_wait: umount, then wait for the daemon to write back and let
# go of the image (it holds the image's lock until it has finished).
unmount_and_wait() {
	umount "$mnt" || return 1
	wait_released 60
}

declare -A path_before
for b in "${binaries[@]}"; do path_before[$b]=$(type -P "$b"); done

begin "PackageScriptBuildsTheDeb"
deb=$(bash "$src/scripts/package.sh" "$build" "$tmp/deb" 2> "$tmp/package.err")
expect_status 0 $?
expect_eq "$tmp/deb/stablefs_${version}_amd64.deb" "$deb"
[[ -f "$deb" ]] || { cat "$tmp/package.err"; echo "no package: nothing more to test"; finish; }

begin "DebDependsOnTheLibrariesAndFuse3"
depends=$(dpkg-deb -f "$deb" Depends)
for d in libfuse3-3 liburing2 libxxhash0 fuse3; do
	[[ ",$depends," =~ [,\ ]$d[\ ,] ]] || fail "Depends lacks $d: $depends"
done
expect_eq "$version" "$(dpkg-deb -f "$deb" Version)"
expect_eq "amd64" "$(dpkg-deb -f "$deb" Architecture)"

begin "AptInstallsTheLocalDeb"
# Directories that exist now stay after the purge (/usr/sbin, ...).
dirs_before=$(dpkg-deb -c "$deb" | awk '$1 ~ /^d/ { print substr($6, 2) }' |
	sed 's|/$||' | while read -r d; do [[ -d "$d" ]] && echo "$d"; done)
installed_by_us=1
apt-get install "${apt_opts[@]}" "$deb" > "$tmp/apt-install.log" 2>&1
status=$?
expect_status 0 $status
((status == 0)) || cat "$tmp/apt-install.log"
expect_eq "install ok installed" "$(dpkg-query -W -f='${Status}' stablefs 2>&1)"
files=$(dpkg -L stablefs)
for b in "${binaries[@]}"; do expect_contains "$files" "/usr/sbin/$b"; done
for m in man8/stablefs.8 man8/mkfs.stablefs.8 man8/fsck.stablefs.8 man8/stablefs-stat.8 \
	man8/stablefs-dump.8 man8/stablefs-tune.8 man1/wac.1 man5/stablefs.5; do
	expect_contains "$files" "/usr/share/man/$m.gz"
done
# What mount.fuse3 will run: it looks `stablefs` up with /bin/sh's PATH.
expect_eq "/usr/sbin/stablefs" "$(env -i /bin/sh -c 'command -v stablefs')"
expect_eq "stablefs (stablefs) $version" "$(/usr/sbin/stablefs --version | head -1)"
expect_eq "/usr/share/man/man5/stablefs.5.gz" "$(man -w 5 stablefs 2>&1)"

begin "InstalledMkfsMakesAFilesystem"
/usr/sbin/mkfs.stablefs -q --size 64M "$img"
expect_status 0 $?

begin "MountTypeFuseStablefsWithFstabOptions"
fstab_options=defaults,noatime,nofail,_netdev,x-systemd.automount,stable_pages=shadow,verify_writes
mount -t fuse.stablefs "$img" "$mnt" -o "$fstab_options"
expect_status 0 $?
expect_eq "$img fuse.stablefs" "$(mounted_source)"
echo "written through the packaged daemon" > "$mnt/hello" && sync "$mnt/hello"
expect_status 0 $?
expect_eq "written through the packaged daemon" "$(cat "$mnt/hello" 2>&1)"
expect_contains "$(/usr/sbin/stablefs-stat "$mnt")" "bytes_written"
unmount_and_wait
expect_status 0 $?
expect_eq "" "$(mounted_source)"

begin "MountFromAnFstabLine"
printf '%s %s fuse.stablefs defaults,ro 0 0\n' "$img" "$mnt" > "$tmp/fstab"
mount -T "$tmp/fstab" "$mnt"
expect_status 0 $?
expect_eq "$img fuse.stablefs" "$(mounted_source)"
expect_contains "$(findmnt -rn -o OPTIONS --mountpoint "$mnt")" "ro"
expect_eq "written through the packaged daemon" "$(cat "$mnt/hello" 2>&1)"
unmount_and_wait
expect_status 0 $?

begin "InstalledFsckFindsItClean"
out=$(/usr/sbin/fsck.stablefs --scrub "$img")
expect_status 0 $?
expect_contains "$out" ": clean:"

begin "PurgeLeavesNothingBehind"
apt-get purge "${apt_opts[@]}" stablefs > "$tmp/apt-purge.log" 2>&1
status=$?
expect_status 0 $status
((status == 0)) || cat "$tmp/apt-purge.log"
installed_by_us=0
dpkg-query -W -f='${Status}' stablefs > /dev/null 2>&1 &&
	fail "dpkg still knows stablefs: $(dpkg-query -W -f='${Status}' stablefs)"
while read -r f; do
	[[ -z "$f" || "$f" == /. ]] && continue
	if [[ -d "$f" ]]; then
		grep -qxF "$f" <<< "$dirs_before" || fail "directory left behind: $f"
	elif [[ -e "$f" || -L "$f" ]]; then
		fail "file left behind: $f"
	fi
done <<< "$files"
for b in "${binaries[@]}"; do expect_eq "${path_before[$b]}" "$(type -P "$b")"; done

finish
