# The Debian package: `bash scripts/package.sh` (cpack -G DEB) writes
# stablefs_<version>_amd64.deb with whatever `cmake --install` installs
# (the binaries in /usr/sbin, the man pages in /usr/share/man).
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME stablefs)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "stablefs maintainers <root@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "FUSE filesystem with checksummed blocks and stable pages")
set(CPACK_PACKAGE_DESCRIPTION
    "stablefs stores files in an image file or block device, checksums every block with
XXH3, journals its metadata and keeps the stable-page guarantee: the bytes that reach
the device are exactly the bytes their checksum was computed over. Includes
mkfs.stablefs, fsck.stablefs, stablefs-stat, stablefs-dump, stablefs-tune and
the wac stress tool.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # stablefs_0.1.0_amd64.deb
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
# The shared libraries (libfuse3-3, liburing2, libxxhash0, libc6, ...) come
# from dpkg-shlibdeps, with the versions the binaries really need; fuse3 is
# named because nothing links it: it brings mount.fuse3, which `mount -t
# fuse.stablefs` runs, and fusermount3.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "fuse3")
include(CPack)
