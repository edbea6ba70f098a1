#include "tools/mountinfo.h"

#include <fstream>
#include <sstream>

namespace stablefs {
namespace {

// mountinfo escapes blanks, tabs, newlines and backslashes as \ooo octal.
std::string unescape_mount_path(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool octal = true;
      for (size_t j = 1; j <= 3; j++) {
        if (s[i + j] < '0' || s[i + j] > '7') octal = false;
        else v = v * 8 + (s[i + j] - '0');
      }
      if (octal) {
        out += char(v);
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

}  // namespace

std::vector<MountInfoEntry> read_mountinfo() {
  std::vector<MountInfoEntry> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTS [optional fields] - FSTYPE SOURCE SUPER_OPTS
    std::istringstream head(line);
    std::string id, parent;
    MountInfoEntry e;
    if (!(head >> id >> parent >> e.devno >> e.root >> e.mount_point)) continue;
    e.root = unescape_mount_path(e.root);
    e.mount_point = unescape_mount_path(e.mount_point);
    auto dash = line.find(" - ");
    if (dash != std::string::npos) {
      std::istringstream tail(line.substr(dash + 3));
      tail >> e.fstype >> e.source;
      e.source = unescape_mount_path(e.source);
    }
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace stablefs
