// A deterministic mixed workload run through the engine API, with a model
// of the namespace and file contents (every engine result is checked
// against it) and a DurabilityOracle fed with write-log positions.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/filesystem.h"
#include "tests/crash/durability_oracle.h"

namespace stablefs::crash {

struct WorkloadStats {
  std::map<std::string, uint64_t> ops;  // op name -> count
  uint64_t total = 0;
};

class CrashWorkload {
 public:
  // log_pos: the current write-log size (0 when nothing records).
  CrashWorkload(Filesystem& fs, uint64_t seed, std::function<size_t()> log_pos);

  // Makes the fixed directories (d0..d3) and fsyncs the root. "" or why not.
  std::string setup();
  // Runs `n` operations; "" or a description of the first mismatch between
  // the engine and the model (op number, op, errno).
  std::string run(int n);
  // Reads back every file and lists every directory; "" or the mismatch.
  std::string verify_all();

  const DurabilityOracle& oracle() const { return oracle_; }
  const WorkloadStats& stats() const { return stats_; }

 private:
  struct Entry {
    bool dir = false;
    uint64_t ino = 0;
  };
  struct Dir {
    uint64_t parent = 0;
    std::string name;
    bool stable = false;  // its path never changes: the oracle tracks its names
    std::map<std::string, Entry> entries;
  };
  struct File {
    std::string data;  // a symlink: its target
    uint32_t nlink = 1;
    bool open_orphan = false;  // unlinked while we hold a reference
    bool symlink = false;
    std::map<std::string, std::string> xattrs;
    InodeImage image() const { return InodeImage{data, symlink, xattrs}; }
  };
  using Name = DurabilityOracle::Name;

  // Each returns false when the random choice does not apply (try another),
  // true when it ran; failures go to err_.
  bool op_create();
  bool op_write();
  bool op_truncate();
  bool op_rename_file();
  bool op_link();
  bool op_unlink();
  bool op_mkdir();
  bool op_rmdir();
  bool op_rename_dir();
  bool op_setxattr();
  bool op_fsync();
  bool op_fsyncdir();
  bool op_fsync_then_dir();  // the usual pattern for making a new file durable
  bool op_close_orphan();
  bool op_read();
  bool op_symlink();  // short (inline) and long (a data block) targets

  uint64_t pick_dir();
  // An existing link to a regular file (or to a symlink too, when asked).
  bool pick_file_name(uint64_t* dir, std::string* name, bool or_symlink = false);
  std::string path_of(uint64_t dir, const std::string& name) const;
  std::vector<std::pair<Name, std::string>> stable_links_of(uint64_t ino) const;
  void drop_link(uint64_t ino, size_t pos);  // nlink--; forget the inode when gone
  std::string fill(size_t len);
  bool fail(const std::string& what, int e);
  std::string verify_dir(uint64_t dir);
  std::string verify_inode(uint64_t ino, const File& f, const std::string& path);

  Filesystem& fs_;
  std::mt19937_64 rng_;
  std::function<size_t()> pos_;
  DurabilityOracle oracle_;
  std::map<uint64_t, Dir> dirs_;
  std::map<uint64_t, File> files_;
  WorkloadStats stats_;
  std::string err_;
  int opno_ = 0;
};

}  // namespace stablefs::crash
