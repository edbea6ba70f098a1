// Dropping privileges on write, truncate and chown, as the VFS does, on a
// real mount. The daemon negotiates FUSE_HANDLE_KILLPRIV_V2, so the kernel
// leaves this to it (fs/kernel_channel.h): a write(2) or truncate by a
// caller without CAP_FSETID drops setuid and the setgid bit of a
// group-executable file, any write(2) drops the file capability, and it
// all survives a remount. The unprivileged caller is a forked child that
// becomes uid/gid 65534 (the mount allows other users).
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "tests/integration/mount_fixture.h"
#include "tests/integration/test_util.h"

namespace stablefs::integ {
namespace {

constexpr uid_t kNobody = 65534;

class Privileges : public SharedMount {  // nobody must reach the mount
 protected:

  // A file owned by nobody with `mode`.
  std::string nobody_file(const char* name, mode_t mode) {
    std::string p = path(name);
    EXPECT_EQ(write_file(p, "data"), 0);
    EXPECT_EQ(chown(p.c_str(), kNobody, kNobody), 0);
    EXPECT_EQ(chmod(p.c_str(), mode), 0);
    EXPECT_EQ(stat_of(p).st_mode & 07777, mode) << "setup";
    return p;
  }

  // Runs fn as uid/gid nobody in a child; fn returns 0 or an errno.
  int as_nobody(const std::function<int()>& fn) { return run_as_user(kNobody, fn); }

  // fn(fd) on p opened with `flags`: 0 or the errno of the step that failed.
  static int on_open_file(const std::string& p, int flags, const std::function<int(int)>& fn) {
    int fd = ::open(p.c_str(), flags);
    if (fd < 0) return errno;
    int e = fn(fd);
    ::close(fd);
    return e;
  }

  static int write_at_start(const std::string& p) {
    return on_open_file(p, O_WRONLY, [](int fd) { return pwrite(fd, "xy", 2, 0) == 2 ? 0 : errno; });
  }

  mode_t mode_of(const std::string& p) { return stat_of(p).st_mode & 07777; }

  // The mode as `stat -c %A` reads it: a statx asking for STATX_MODE
  // alone, which the kernel answers from its attribute cache when it holds
  // the mode (a write invalidates only size and times).
  static mode_t cached_mode_of(const std::string& p) {
    struct statx sx {};
    if (statx(AT_FDCWD, p.c_str(), 0, STATX_MODE, &sx) != 0) return 0177777;
    return sx.stx_mode & 07777;
  }

  static int direct_write_at_start(const std::string& p) {
    return on_open_file(p, O_WRONLY | O_DIRECT, [](int fd) {
      void* buf = nullptr;
      if (posix_memalign(&buf, 4096, 4096) != 0) return ENOMEM;
      std::memset(buf, 'd', 4096);
      int e = pwrite(fd, buf, 4096, 0) == 4096 ? 0 : errno;
      std::free(buf);
      return e;
    });
  }

  static int fallocate_at_start(const std::string& p, int mode) {
    return on_open_file(p, O_WRONLY, [mode](int fd) {
      return ::fallocate(fd, mode, 0, 64 << 10) == 0 ? 0 : errno;
    });
  }

  // A file of root's (group root), writable by everyone, with `mode`:
  // nobody is outside its group.
  std::string root_file(const char* name, mode_t mode) {
    std::string p = path(name);
    EXPECT_EQ(write_file(p, std::string(128 << 10, 'r')), 0);
    EXPECT_EQ(chmod(p.c_str(), mode), 0);
    EXPECT_EQ(mode_of(p), mode) << "setup";
    return p;
  }
};

TEST_F(Privileges, UnprivilegedWriteDropsSetuidAndGroupExecutableSetgid) {
  std::string p = nobody_file("f", 06775);
  ASSERT_EQ(as_nobody([&] { return write_at_start(p); }), 0);
  EXPECT_EQ(mode_of(p), 0775u);
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_EQ(mode_of(p), 0775u) << "the drop was journalled";
}

TEST_F(Privileges, UnprivilegedWriteKeepsSetgidOfAFileThatIsNotGroupExecutable) {
  // Mandatory-locking style setgid (no group x): the VFS keeps it for a
  // member of the group, and so do we.
  std::string p = nobody_file("f", 02764);
  ASSERT_EQ(as_nobody([&] { return write_at_start(p); }), 0);
  EXPECT_EQ(mode_of(p), 02764u);
}

// The kernel learns of the drop at once, also through O_DIRECT (xfstests
// generic/355: `stat -c %A` right after the write showed the old mode).
TEST_F(Privileges, UnprivilegedDirectWriteDropsSetuidAndTheKernelSeesItAtOnce) {
  std::string p = nobody_file("f", 06775);
  ASSERT_EQ(cached_mode_of(p), 06775u) << "setup";
  ASSERT_EQ(as_nobody([&] { return direct_write_at_start(p); }), 0);
  EXPECT_EQ(cached_mode_of(p), 0775u);
  EXPECT_EQ(mode_of(p), 0775u);
}

TEST_F(Privileges, UnprivilegedWriteDropsSetuidAndTheKernelSeesItAtOnce) {
  std::string p = nobody_file("f", 04755);
  ASSERT_EQ(cached_mode_of(p), 04755u) << "setup";
  ASSERT_EQ(as_nobody([&] { return write_at_start(p); }), 0);
  EXPECT_EQ(cached_mode_of(p), 0755u);
}

// The VFS drops setgid without group-exec for a writer outside the file's
// group (setattr_should_drop_sgid), and so do we.
TEST_F(Privileges, WriteByANonMemberDropsSetgidThatIsNotGroupExecutable) {
  std::string p = root_file("f", 02666);
  ASSERT_EQ(as_nobody([&] { return write_at_start(p); }), 0);
  EXPECT_EQ(cached_mode_of(p), 0666u);
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_EQ(mode_of(p), 0666u) << "the drop was journalled";
}

// fallocate drops privileges like a write (xfstests generic/683-685: under
// KILLPRIV_V2 the kernel sends no request that drops them).
TEST_F(Privileges, FallocateByANonMemberDropsSetuidAndSetgid) {
  for (int mode : {0, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, FALLOC_FL_ZERO_RANGE}) {
    SCOPED_TRACE("fallocate mode " + std::to_string(mode));
    std::string p = root_file("f", 06666);
    ASSERT_EQ(as_nobody([&] { return fallocate_at_start(p, mode); }), 0);
    EXPECT_EQ(cached_mode_of(p), 0666u);
    ASSERT_EQ(unlink(p.c_str()), 0);
  }
  std::string p = root_file("gx", 06676);
  ASSERT_EQ(as_nobody([&] { return fallocate_at_start(p, 0); }), 0);
  EXPECT_EQ(cached_mode_of(p), 0676u);
}

TEST_F(Privileges, FallocateByRootKeepsSetuidAndSetgid) {
  std::string p = root_file("f", 06676);
  ASSERT_EQ(fallocate_at_start(p, 0), 0);  // CAP_FSETID
  EXPECT_EQ(mode_of(p), 06676u);
}

TEST_F(Privileges, WriteByRootKeepsSetuidAndSetgid) {
  std::string p = nobody_file("f", 06775);
  ASSERT_EQ(write_at_start(p), 0);  // CAP_FSETID
  EXPECT_EQ(mode_of(p), 06775u);
}

TEST_F(Privileges, UnprivilegedTruncateDropsSetuid) {
  std::string p = nobody_file("f", 04755);
  ASSERT_EQ(as_nobody([&] { return ::truncate(p.c_str(), 1) == 0 ? 0 : errno; }), 0);
  EXPECT_EQ(mode_of(p), 0755u);
  EXPECT_EQ(stat_of(p).st_size, 1);
}

TEST_F(Privileges, ChownOfAFileDropsSetuidEvenForRoot) {
  std::string p = nobody_file("f", 06755);
  ASSERT_EQ(chown(p.c_str(), 0, 0), 0);
  EXPECT_EQ(mode_of(p), 0755u);
}

TEST_F(Privileges, AnyWriteDropsTheFileCapability) {
  std::string p = path("f");
  ASSERT_EQ(write_file(p, "data"), 0);
  // struct vfs_cap_data, revision 2: CAP_NET_BIND_SERVICE permitted.
  unsigned char cap[20] = {0, 0, 0, 2, 0, 4, 0, 0};
  ASSERT_EQ(setxattr(p.c_str(), "security.capability", cap, sizeof cap, 0), 0)
      << std::strerror(errno);
  ASSERT_EQ(getxattr(p.c_str(), "security.capability", nullptr, 0), ssize_t(sizeof cap));
  ASSERT_EQ(write_at_start(p), 0);  // even by root
  EXPECT_EQ(getxattr(p.c_str(), "security.capability", nullptr, 0), -1);
  EXPECT_EQ(errno, ENODATA);
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_EQ(getxattr(p.c_str(), "security.capability", nullptr, 0), -1);
  EXPECT_EQ(errno, ENODATA);
}

// On a mount whose requests carry the caller's ids (allow_root: such a
// mount does not take FUSE_ALLOW_IDMAP, fs/kernel_channel.cc), membership
// of the file's group through a supplementary group counts: the header
// holds only the fsgid, so the daemon must still read the groups from
// /proc. The caller is root without CAP_FSETID (allow_root serves only
// root and the mount's owner), fsgid nobody, and kGroup as its only
// supplementary group.
class PrivilegesWithCallerIds : public Privileges {
 protected:
  std::string mount_options() const override { return "allow_root"; }
  static constexpr gid_t kGroup = 4242;

  // fn in a child with fsgid nobody, supplementary `groups`, and no CAP_FSETID.
  static int as_root_without_fsetid(std::vector<gid_t> groups, const std::function<int()>& fn) {
    pid_t pid = fork();
    if (pid == 0) {
      if (setgroups(groups.size(), groups.data()) != 0 || setgid(kNobody) != 0) _exit(100);
      __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
      __user_cap_data_struct caps[2]{};
      if (syscall(SYS_capget, &hdr, caps) != 0) _exit(101);
      caps[CAP_FSETID / 32].effective &= ~(1u << (CAP_FSETID % 32));
      if (syscall(SYS_capset, &hdr, caps) != 0) _exit(102);
      _exit(fn());
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
  }

  // A file of root's in group kGroup, setgid without group x.
  std::string group_file(const char* name) {
    std::string p = root_file(name, 02666);
    EXPECT_EQ(chown(p.c_str(), 0, kGroup), 0);
    EXPECT_EQ(chmod(p.c_str(), 02666), 0);
    EXPECT_EQ(mode_of(p), 02666u) << "setup";
    return p;
  }
};

// An O_DIRECT write reaches the daemon from the writer (a buffered one by
// a member goes to the page cache: the kernel sees no privilege to drop),
// flagged FUSE_WRITE_KILL_SUIDGID, so the capability is known without
// /proc; the group must still be looked up there.
TEST_F(PrivilegesWithCallerIds, DirectWriteByASupplementaryMemberOfTheGroupKeepsSetgid) {
  std::string member = group_file("member");
  ASSERT_EQ(as_root_without_fsetid({kGroup}, [&] { return direct_write_at_start(member); }), 0);
  EXPECT_EQ(cached_mode_of(member), 02666u);
  EXPECT_EQ(mode_of(member), 02666u);
  // The same caller outside the group loses it: the drop path is live.
  std::string outsider = group_file("outsider");
  ASSERT_EQ(as_root_without_fsetid({}, [&] { return direct_write_at_start(outsider); }), 0);
  EXPECT_EQ(cached_mode_of(outsider), 0666u);
}

}  // namespace
}  // namespace stablefs::integ
