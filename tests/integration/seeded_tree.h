// A directory tree generated from a seed, with a manifest of everything a
// copy must preserve, so a copy can be checked against what was generated
// rather than against a live directory that may change meanwhile.
//
// The tree holds: regular files of every size around page boundaries
// (0, 1, 4095, 4096, 4097, 8191, 65537, ... up to a few MiB), sparse files
// (leading, inner and trailing holes, all hole), names of 255 bytes and
// odd bytes, short and long symlinks (1 to 4000 bytes, inline and block
// targets, dangling and not), hard links across directories, fifos, user
// xattrs (empty, binary, large, many), unusual modes (0000, setuid,
// sticky), other owners, nested directories, a bulk of small files, and a
// fixed, distinct mtime (with nanoseconds) on every inode.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <ctime>
#include <map>
#include <string>

namespace stablefs::integ {

struct TreeEntry {
  char type = 0;          // 'f' file, 'd' directory, 'l' symlink, 'p' fifo
  mode_t mode = 0;        // permission bits, setuid/setgid/sticky included
  uid_t uid = 0;
  gid_t gid = 0;
  nlink_t nlink = 1;      // directories: 2 + subdirectories
  uint64_t size = 0;      // files: bytes; symlinks: target length
  uint64_t hash = 0;      // files: XXH3-64 of the content (holes as zeros)
  uint64_t max_allocated = 0;  // files: st_blocks * 512 at most this (0: no bound)
  std::string target;     // symlinks
  std::string link_group; // hard links: every path of one inode names the first
  std::map<std::string, std::string> xattrs;
  timespec mtime{};
};

// Relative path ("sizes/4096") -> what must be found there.
using TreeManifest = std::map<std::string, TreeEntry>;

// Generates the tree under `root` (an existing, empty directory, on a
// filesystem with user xattrs, sparse files and ns timestamps) and fills
// *manifest. Returns "" or what failed.
std::string make_seeded_tree(const std::string& root, uint64_t seed, TreeManifest* manifest);

// Compares the tree under `root` with the manifest: the same set of paths,
// and for each its type, mode, owner, link count, size, content hash,
// allocation bound, symlink target, xattrs, mtime, and hard-link identity.
// Returns "" or the differences (the first few dozen).
std::string compare_with_manifest(const std::string& root, const TreeManifest& manifest);

}  // namespace stablefs::integ
