// Exclusion between processes on this host through flock(2): on an image
// file itself, or on a lock file standing in for something that has no file
// to lock here (an NBD export).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/base/result.h"

namespace stablefs {

// Takes flock on fd (shared or exclusive), waiting up to busy_wait_ms for
// another holder to let go: the holder is typically a daemon finishing its
// unmount. EBUSY when it does not. flock belongs to the open file
// description, so it also excludes a second open from this very process.
Status flock_with_deadline(int fd, bool shared, uint32_t busy_wait_ms);

// A lock file that exists only while someone holds it, so lock files do not
// pile up (one per NBD URI ever used). The protocol that makes removing it
// safe: a holder that finds, once locked, that the path no longer names the
// file it locked (a leaving holder removed it meanwhile) starts again on the
// new file; a leaving holder removes the file only while it holds it
// exclusively, that is when no one else holds it.
class HostLock {
 public:
  static Result<std::unique_ptr<HostLock>> acquire(const std::string& path, bool shared,
                                                   uint32_t busy_wait_ms);
  ~HostLock();
  HostLock(const HostLock&) = delete;
  HostLock& operator=(const HostLock&) = delete;

 private:
  HostLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_;
};

}  // namespace stablefs
