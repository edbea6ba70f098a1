// The workload a process-kill test runs against a live FUSE mount, in a
// child process: creates, writes (appends, overwrites, holes), truncates,
// renames (also over existing files and across directories), unlinks,
// fsync/fdatasync, and shared-mmap stores made durable with msync.
//
// It keeps a journal outside the mount, in a kernel filesystem that a dead
// daemon cannot affect: "D path" before any change to a file's content or
// name begins, "S path size hash" after the file's content and its
// directory entry were made durable (fsync/fdatasync/msync of the file,
// then fsync of its directory); "L path size hash" after a symlink was
// created and its directory fsync'd. A path whose last record is S must hold
// exactly that content after the daemon is killed and the image remounted.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace stablefs::crash {

// Runs until a filesystem call fails (the daemon is gone); writes one byte
// to progress_fd after every completed operation. Never returns: _exit(0).
[[noreturn]] void run_kill_workload(const std::string& root, const std::string& journal_path,
                                    uint64_t seed, int progress_fd);

struct DurableFile {
  uint64_t size = 0;
  uint64_t hash = 0;  // XXH3-64 of the content (a symlink: of its target)
  bool symlink = false;
};

// path (relative to root) -> what it must hold, from a journal.
std::map<std::string, DurableFile> durable_files(const std::string& journal_text,
                                                 uint64_t* sync_records);

uint64_t content_hash(const std::string& data);

}  // namespace stablefs::crash
