// Small helpers the integration tests share: an owning fd and whole-file
// reads/writes that report errno instead of throwing.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>

#include "core/base/unique_fd.h"

namespace stablefs::integ {

using ::stablefs::UniqueFd;

inline UniqueFd open_fd(const std::string& path, int flags, mode_t mode = 0644) {
  return UniqueFd(::open(path.c_str(), flags | O_CLOEXEC, mode));
}

// Writes (creating/truncating) the whole file; returns 0 or errno.
inline int write_file(const std::string& path, std::string_view data, mode_t mode = 0644) {
  UniqueFd fd = open_fd(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (!fd.ok()) return errno;
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0) return errno;
    done += size_t(n);
  }
  // close() reports a deferred write error, so it is checked, not left to RAII.
  return ::close(fd.release()) == 0 ? 0 : errno;
}

// Whole file contents; "<errno N>" marker on failure so comparisons fail
// with a readable message.
inline std::string slurp(const std::string& path) {
  UniqueFd fd = open_fd(path, O_RDONLY);
  if (!fd.ok()) return "<open errno " + std::to_string(errno) + ">";
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) return "<read errno " + std::to_string(errno) + ">";
    if (n == 0) break;
    out.append(buf, size_t(n));
  }
  return out;
}

inline struct stat stat_of(const std::string& path) {
  struct stat st;
  std::memset(&st, 0, sizeof(st));
  if (::lstat(path.c_str(), &st) != 0) st.st_ino = 0;
  return st;
}

// Compares byte strings without printing megabytes on failure: reports the
// sizes and the first differing offset.
inline ::testing::AssertionResult same_bytes(std::string_view got, std::string_view want) {
  if (got == want) return ::testing::AssertionSuccess();
  size_t at = 0;
  while (at < got.size() && at < want.size() && got[at] == want[at]) ++at;
  auto show = [&](std::string_view s) {
    std::string out;
    for (size_t i = at; i < s.size() && i < at + 16; ++i) {
      char b[8];
      std::snprintf(b, sizeof(b), "%02x ", unsigned(uint8_t(s[i])));
      out += b;
    }
    return out;
  };
  return ::testing::AssertionFailure()
         << "got " << got.size() << " bytes, want " << want.size() << "; first difference at " << at
         << ": got [" << show(got) << "] want [" << show(want) << "]"
         << (got.size() < 64 ? " got=\"" + std::string(got) + "\"" : std::string());
}

// errno of listing `dir` (0 when the whole listing came back).
inline int list_errno(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return errno;
  errno = 0;
  while (readdir(d) != nullptr) {
  }
  int e = errno;
  closedir(d);
  return e;
}

inline bool all_zero(std::string_view s) { return s.find_first_not_of('\0') == std::string::npos; }

// Polls `ready` until it holds or the deadline passes. Only for events
// outside our control (the kernel sends FUSE FORGET asynchronously after
// the last reference to an unlinked inode goes, so the daemon frees its
// blocks a moment after unlink() returns); never to "let things settle".
template <class Pred>
bool wait_until(Pred ready, std::chrono::milliseconds deadline) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  for (;;) {
    if (ready()) return true;
    if (std::chrono::steady_clock::now() >= end) return false;
    ::usleep(2000);
  }
}

// 0 if `p` opens with `flags`, else the errno.
// Bytes statfs counts free (f_bfree) on the filesystem holding `path`.
inline uint64_t free_bytes(const std::string& path) {
  struct statvfs s {};
  if (::statvfs(path.c_str(), &s) != 0) return 0;
  return uint64_t(s.f_bfree) * s.f_frsize;
}

// An unlinked file's blocks are freed when the kernel forgets the inode
// (FORGET comes asynchronously after the unlink), in whatever transaction
// is running then. Waits until statfs counts `bytes` more free than
// `before`, so that a commit after it carries the free.
inline bool wait_for_freed(const std::string& mnt, uint64_t before, uint64_t bytes) {
  return wait_until([&] { return free_bytes(mnt) >= before + bytes; }, std::chrono::seconds(10));
}

inline int open_errno(const std::string& p, int flags) {
  int fd = ::open(p.c_str(), flags);
  if (fd < 0) return errno;
  ::close(fd);
  return 0;
}

// Runs fn in a forked child that has become uid/gid `id` with no
// supplementary groups; fn returns 0 or an errno. -1 if the child died.
inline int run_as_user(uid_t id, const std::function<int()>& fn) {
  pid_t pid = fork();
  if (pid == 0) {
    if (setgroups(0, nullptr) != 0 || setgid(id) != 0 || setuid(id) != 0) _exit(100);
    _exit(fn());
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

// errno of a call that is expected to fail (0 if it succeeded).
#define SFS_ERRNO_OF(call) ((call) < 0 ? errno : 0)

}  // namespace stablefs::integ
