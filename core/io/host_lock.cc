#include "core/io/host_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>

namespace stablefs {

Status flock_with_deadline(int fd, bool shared, uint32_t busy_wait_ms) {
  int op = (shared ? LOCK_SH : LOCK_EX) | LOCK_NB;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(busy_wait_ms);
  while (::flock(fd, op) != 0) {
    if (errno != EWOULDBLOCK) return err(errno);
    // Polling the lock of another process, with a deadline: flock has no
    // timed wait.
    if (std::chrono::steady_clock::now() >= deadline) return err(EBUSY);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return Status::Ok();
}

Result<std::unique_ptr<HostLock>> HostLock::acquire(const std::string& path, bool shared,
                                                    uint32_t busy_wait_ms) {
  for (;;) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return err(errno);
    if (Status s = flock_with_deadline(fd, shared, busy_wait_ms); !s.ok()) {
      ::close(fd);
      return err(s.error());
    }
    struct stat held, named;
    if (::fstat(fd, &held) == 0 && ::stat(path.c_str(), &named) == 0 &&
        held.st_dev == named.st_dev && held.st_ino == named.st_ino)
      return std::unique_ptr<HostLock>(new HostLock(path, fd));
    // We locked a file its last holder removed after we opened it: that
    // lock excludes no one. Start again on whatever the path names now.
    ::close(fd);
  }
}

HostLock::~HostLock() {
  // Converting a shared lock is not atomic (flock(2)), which does not
  // matter here: we are letting go either way, and remove the file only if
  // no one else holds it.
  if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) ::unlink(path_.c_str());
  ::close(fd_);
}

}  // namespace stablefs
