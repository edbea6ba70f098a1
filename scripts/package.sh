#!/usr/bin/env bash
# Builds the Debian package: stablefs_<version>_amd64.deb.
# usage: scripts/package.sh [BUILD_DIR [OUT_DIR]]    (default: build build)
# Configures BUILD_DIR (RelWithDebInfo) if it has not been configured, brings
# it up to date, and runs cpack; prints the path of the .deb.
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(realpath -m "${1:-build}")
out=$(realpath -m "${2:-$build}")
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" >/dev/null
fi
cmake --build "$build" -j"$(nproc)" >/dev/null
mkdir -p "$out"
# cpack talks on both streams even when all is well: keep it for a failure.
if ! cpack --config "$build/CPackConfig.cmake" -B "$out" > "$out/cpack.log" 2>&1; then
  cat "$out/cpack.log" >&2
  exit 1
fi
rm -f "$out/cpack.log"
rm -rf "$out/_CPack_Packages"  # cpack's staging tree
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")
deb="$out/stablefs_${version}_$(dpkg --print-architecture).deb"
[[ -f "$deb" ]] || { echo "package: cpack did not write $deb" >&2; exit 1; }
echo "$deb"
