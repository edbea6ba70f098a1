// What a crash may not take away: (path, content) pairs that POSIX promises
// are durable, each valid over an interval of write-log positions.
//
// A pair becomes durable when both halves are: the file's content was
// fsync'd (or fdatasync'd) and the name was made durable by an fsync of its
// directory after the name was linked. It stops being promised the moment
// an operation that could change either half begins: a write or truncate
// of the inode, or an unlink/rename/link touching the name. Positions are
// write-log sizes, so a crash image built from log entries [0, x) must show
// every pair with from <= x <= until.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace stablefs::crash {

// What an inode must read back as: a file's bytes or a symlink's target,
// and its extended attributes.
struct InodeImage {
  std::string content;  // exact bytes, size included (a symlink: its target)
  bool symlink = false;
  std::map<std::string, std::string> xattrs;
  bool operator==(const InodeImage&) const = default;
};

struct Expectation {
  std::string path;     // relative to the root, e.g. "d1/f3"
  std::string content;  // exact bytes, size included (a symlink: its target)
  bool symlink = false;
  std::map<std::string, std::string> xattrs;
  size_t from = 0;      // log size when the promise was made
  size_t until = std::numeric_limits<size_t>::max();  // log size when it lapsed

  bool active_at(size_t x) const { return from <= x && x <= until; }
};

// Tracks the promise for names in directories whose own path never changes
// (the root and directories fixed at setup); callers say which those are.
class DurabilityOracle {
 public:
  using Name = std::pair<uint64_t, std::string>;  // (directory ino, entry name)

  // The inode's content is about to change: every promise about it lapses.
  void content_changing(uint64_t ino, size_t pos);
  // The name is about to be unlinked, replaced or created.
  void name_changing(const Name& name, size_t pos);
  // fsync(ino) returned with `image`; `names` are the inode's current links
  // in stable directories, with their paths. A symlink's image is durable
  // with its inode, so it is reported synced as soon as it is created.
  void content_synced(uint64_t ino, const InodeImage& image,
                      const std::vector<std::pair<Name, std::string>>& names, size_t pos);
  // fsyncdir returned: these (name -> ino, path) links are durable.
  void names_synced(const std::vector<std::pair<Name, std::string>>& names,
                    const std::vector<uint64_t>& inos, size_t pos);
  // The inode is gone (last link and last reference dropped).
  void forget_inode(uint64_t ino) { synced_.erase(ino); }

  const std::vector<Expectation>& expectations() const { return exps_; }

 private:
  void maybe_open(const Name& name, const std::string& path, uint64_t ino, size_t pos);
  void close(const Name& name, size_t pos);

  std::map<uint64_t, InodeImage> synced_;  // ino -> image as of its last fsync
  std::map<Name, uint64_t> durable_names_;  // name -> ino it durably refers to
  std::map<Name, size_t> open_;             // name -> index of its open promise
  std::map<uint64_t, std::set<Name>> open_by_ino_;
  std::vector<Expectation> exps_;
};

}  // namespace stablefs::crash
