#!/usr/bin/env bash
# Installs the Debian 12 packages stablefs needs, only those missing.
set -euo pipefail
PKGS=(build-essential cmake pkg-config fuse3 libfuse3-dev liburing-dev libxxhash-dev
      libboost-dev libgtest-dev libgmock-dev spin fio fuse2fs mandoc libnbd-dev nbdkit
      qemu-utils clang libclang-rt-14-dev acl e2fsprogs psmisc)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
