// File handles on a real mount (FUSE_CAP_EXPORT_SUPPORT): a handle from
// name_to_handle_at opens the same file with open_by_handle_at after the
// kernel has forgotten the inode (here: after a remount, which makes a new
// superblock with no inodes at all), a directory's handle is reconnected to
// its path through LOOKUPs of "..", and the handle of a removed file is
// ESTALE. Before export support every one of these was ESTALE (xfstests
// generic/426, 467, 477).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "tests/integration/mount_fixture.h"
#include "tests/integration/test_util.h"

namespace stablefs::integ {
namespace {

struct Handle {
  std::unique_ptr<file_handle, decltype(&free)> fh{nullptr, &free};
};

class FileHandles : public RealMount {
 protected:
  Handle handle_of(const std::string& p) {
    Handle h;
    h.fh.reset(static_cast<file_handle*>(malloc(sizeof(file_handle) + MAX_HANDLE_SZ)));
    h.fh->handle_bytes = MAX_HANDLE_SZ;
    int mount_id = 0;
    EXPECT_EQ(name_to_handle_at(AT_FDCWD, p.c_str(), h.fh.get(), &mount_id, 0), 0)
        << p << ": " << std::strerror(errno);
    return h;
  }
  // open_by_handle_at on the current mount: the fd, or -errno.
  int open_handle(const Handle& h, int flags) {
    UniqueFd mnt_fd = open_fd(mnt(), O_RDONLY | O_DIRECTORY);
    int fd = open_by_handle_at(mnt_fd.get(), h.fh.get(), flags);
    return fd >= 0 ? fd : -errno;
  }
  static std::string fd_path(int fd) {
    char buf[4096];
    ssize_t n = readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), buf, sizeof buf);
    return n > 0 ? std::string(buf, size_t(n)) : std::string("<readlink failed>");
  }
};

// ...and once the file is removed, its handle is stale, also when a new
// file takes its slot (the generation tells them apart).
TEST_F(FileHandles, AFileHandleOpensTheFileAfterRemountUntilTheFileIsRemoved) {
  ASSERT_EQ(write_file(path("f"), "handle data"), 0);
  const ino_t f_ino = stat_of(path("f")).st_ino;
  Handle h = handle_of(path("f"));
  ASSERT_NO_FATAL_FAILURE(remount());
  int fd = open_handle(h, O_RDONLY);
  ASSERT_GE(fd, 0) << std::strerror(-fd);
  char buf[32] = {};
  EXPECT_EQ(pread(fd, buf, sizeof buf, 0), 11);
  EXPECT_STREQ(buf, "handle data");
  ::close(fd);

  ASSERT_EQ(unlink(path("f").c_str()), 0);
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_EQ(open_handle(h, O_RDONLY), -ESTALE);
  ASSERT_EQ(write_file(path("g"), "y"), 0);
  ASSERT_EQ(stat_of(path("g")).st_ino, f_ino) << "setup: g reuses f's inode slot";
  EXPECT_EQ(open_handle(h, O_RDONLY), -ESTALE);
}

TEST_F(FileHandles, ADirectoryHandleIsReconnectedToItsPath) {
  ASSERT_EQ(mkdir(path("a").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(path("a/b").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(path("a/b/c").c_str(), 0755), 0);
  Handle h = handle_of(path("a/b/c"));
  ASSERT_NO_FATAL_FAILURE(remount());
  int fd = open_handle(h, O_RDONLY | O_DIRECTORY);
  ASSERT_GE(fd, 0) << std::strerror(-fd);
  // The kernel found c's ancestors with LOOKUP ".." up to the root.
  EXPECT_EQ(fd_path(fd), path("a/b/c"));
  ::close(fd);
}

}  // namespace
}  // namespace stablefs::integ
