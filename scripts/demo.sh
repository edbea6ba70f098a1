#!/usr/bin/env bash
# The main job: make an image, mount it, write files, read them back and
# checksum them, remount, scrub, unmount.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
BIN=build/tools
work=$(mktemp -d /tmp/stablefs-demo.XXXXXX)
img=$work/demo.img mnt=$work/mnt
mkdir -p "$mnt"
daemon=
cleanup() {
  if mountpoint -q "$mnt"; then fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -uz "$mnt"; fi
  [[ -n $daemon ]] && kill "$daemon" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mount_fs() {
  "$BIN/stablefs" "$img" "$mnt" -f "$@" 2>>"$work/daemon.log" &
  daemon=$!
  for _ in $(seq 100); do mountpoint -q "$mnt" && return 0; sleep 0.1; done
  echo "demo: mount did not come up"; cat "$work/daemon.log"; exit 1
}
unmount_fs() {
  fusermount3 -u "$mnt"
  wait "$daemon"
  daemon=
}

echo "== mkfs.stablefs --size 1G $img"
"$BIN/mkfs.stablefs" --size 1G "$img"
echo "== mount"
mount_fs
grep " $mnt " /proc/mounts
echo "== write: 64 MiB of random data, a copy of /usr/include/linux, a symlink"
head -c 64M /dev/urandom > "$mnt/random.bin"
cp -a /usr/include/linux "$mnt/linux-headers"
ln -s random.bin "$mnt/link"
sync "$mnt/random.bin"
sum_before=$(sha256sum < "$mnt/random.bin")
tree_before=$(cd "$mnt/linux-headers" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum)
df -h "$mnt"
echo "== unmount and mount again"
unmount_fs
mount_fs
echo "== read back and checksum"
sum_after=$(sha256sum < "$mnt/random.bin")
tree_after=$(cd "$mnt/linux-headers" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum)
echo "random.bin   before ${sum_before%% *}"
echo "random.bin   after  ${sum_after%% *}"
echo "headers tree before ${tree_before%% *}"
echo "headers tree after  ${tree_after%% *}"
[[ $sum_before == "$sum_after" && $tree_before == "$tree_after" ]] || { echo "demo: MISMATCH"; exit 1; }
ls -l "$mnt" 
unmount_fs
echo "== fsck.stablefs --scrub (every data block against its XXH3 checksum)"
"$BIN/fsck.stablefs" --scrub "$img"
echo "== wac --reproduce: the write-after-checksum race, per stable_pages policy"
# Scratch filesystems for off, wait, shadow and bounce (all with
# verify_writes), scenarios A-F, 2 s each, then a scrub of each.
set +e
build/tools/wac/wac --reproduce --image "$work/wac.img" -t 2
rc=$?
set -e
case $rc in
  0) echo "wac: off reproduced the race; wait, shadow and bounce had 0 integrity errors" ;;
  3) echo "wac: wait, shadow and bounce had 0 integrity errors (off did not race in 2 s this time)" ;;
  *) echo "demo: wac exit $rc"; exit 1 ;;
esac
echo "demo: OK"
