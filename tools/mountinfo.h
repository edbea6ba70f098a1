// The mounts this process sees, from /proc/self/mountinfo (proc(5)).
#pragma once

#include <string>
#include <vector>

namespace stablefs {

struct MountInfoEntry {
  std::string mount_point;  // unescaped, relative to this process's root
  std::string devno;        // "MAJOR:MINOR" of the superblock
  std::string root;         // the directory of the filesystem mounted here
  std::string fstype;       // "fuse.stablefs"
  std::string source;       // unescaped
};

// In mount order (parents before children). Empty if /proc is not there.
std::vector<MountInfoEntry> read_mountinfo();

}  // namespace stablefs
