// Idmapped mounts of a stablefs mount (FUSE_ALLOW_IDMAP, fs/kernel_channel.h)
// on a real mount: a clone of the mount, idmapped with mount_setattr(2)
// through a user namespace that maps ids 0-65535 to 100000-165535, shows
// every owner shifted by 100000, and a node created through it by a caller
// with fsuid/fsgid 101000 is stored as owned by 1000:1000.
//
// Allowing them costs the daemon the caller's ids in every request that
// creates nothing (the kernel sends FUSE_INVALID_UIDGID there, on plain
// mounts too): what depends on them reads them from /proc instead
// (fs/request_caller.h). The setgid tests in privileges_test.cc and the
// shutdown and trim tests cover those paths; here, that a caller the
// daemon cannot see as root in the request is still told apart.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fs.h>
#include <linux/mount.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "tests/integration/mount_fixture.h"
#include "tests/integration/test_util.h"

namespace stablefs::integ {
namespace {

constexpr uid_t kShift = 100000;    // the idmap's first outside id
constexpr uid_t kOnDisk = 1000;     // the owner a creation through it stores
constexpr uid_t kNobody = 65534;

using Idmap = SharedMount;  // other ids must reach the mount

bool write_text(const std::string& p, const std::string& text) {
  UniqueFd f = open_fd(p, O_WRONLY);
  return f.ok() && ::write(f.get(), text.data(), text.size()) == ssize_t(text.size());
}

// A user namespace whose ids 0..65535 are kShift..kShift+65535 outside, as
// an fd: a child unshares it and waits while we write its maps (as root in
// the parent namespace, no setgroups deny is needed) and open it.
UniqueFd idmap_userns() {
  int ready[2], done[2];
  if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(done, O_CLOEXEC) != 0) return UniqueFd();
  pid_t pid = fork();
  if (pid == 0) {
    char c = 0;
    ::close(ready[0]);
    ::close(done[1]);  // else our own copy would keep the read below open
    if (unshare(CLONE_NEWUSER) != 0) _exit(1);
    if (::write(ready[1], &c, 1) != 1) _exit(1);
    (void)::read(done[0], &c, 1);  // until the parent is done with us
    _exit(0);
  }
  ::close(ready[1]);
  ::close(done[0]);
  char c;
  UniqueFd ns;
  if (pid > 0 && ::read(ready[0], &c, 1) == 1) {
    const std::string proc = "/proc/" + std::to_string(pid) + "/";
    const std::string map = "0 " + std::to_string(kShift) + " 65536\n";
    if (write_text(proc + "uid_map", map) && write_text(proc + "gid_map", map))
      ns = open_fd(proc + "ns/user", O_RDONLY);
  }
  ::close(ready[0]);
  ::close(done[1]);
  if (pid > 0) waitpid(pid, nullptr, 0);
  return ns;
}

// A detached clone of the mount at `mnt`, idmapped through `userns`; on
// failure an invalid fd and errno from the step that failed.
UniqueFd idmapped_clone(const std::string& mnt, int userns) {
  UniqueFd tree(int(syscall(SYS_open_tree, AT_FDCWD, mnt.c_str(),
                            unsigned(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC))));
  if (!tree.ok()) return tree;
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_IDMAP;
  attr.userns_fd = uint64_t(userns);
  if (syscall(SYS_mount_setattr, tree.get(), "", AT_EMPTY_PATH, &attr, sizeof attr) != 0)
    return UniqueFd();
  return tree;
}

struct stat stat_at(int dirfd, const char* rel) {
  struct stat st {};
  if (fstatat(dirfd, rel, &st, AT_SYMLINK_NOFOLLOW) != 0) st.st_uid = st.st_gid = uid_t(-2);
  return st;
}

TEST_F(Idmap, NodesCreatedThroughAnIdmappedMountAreOwnedByTheMappedIds) {
  ASSERT_EQ(mkdir(path("shared").c_str(), 0777), 0);
  ASSERT_EQ(chmod(path("shared").c_str(), 0777), 0);  // past the umask
  UniqueFd userns = idmap_userns();
  ASSERT_TRUE(userns.ok()) << "user namespace: " << strerror(errno);
  UniqueFd tree = idmapped_clone(mnt(), userns.get());
  ASSERT_TRUE(tree.ok()) << "idmapped mount of the stablefs mount: " << strerror(errno);

  // What the filesystem stores as 0 (root's directory), the mount shows
  // as the idmap's first id.
  EXPECT_EQ(stat_at(tree.get(), "shared").st_uid, kShift);
  EXPECT_EQ(stat_at(tree.get(), "shared").st_gid, kShift);

  const int t = tree.get();
  ASSERT_EQ(run_as_user(kShift + kOnDisk, [t] {
              UniqueFd f(openat(t, "shared/file", O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
              if (!f.ok() || ::write(f.get(), "x", 1) != 1) return errno;
              if (mkdirat(t, "shared/dir", 0755) != 0) return errno;
              if (symlinkat("file", t, "shared/link") != 0) return errno;
              if (mknodat(t, "shared/fifo", S_IFIFO | 0644, 0) != 0) return errno;
              return 0;
            }),
            0);

  for (const char* name : {"file", "dir", "link", "fifo"}) {
    SCOPED_TRACE(name);
    const std::string rel = std::string("shared/") + name;
    struct stat plain = stat_at(AT_FDCWD, path(rel).c_str());
    EXPECT_EQ(plain.st_uid, kOnDisk);
    EXPECT_EQ(plain.st_gid, kOnDisk);
    struct stat mapped = stat_at(t, rel.c_str());
    EXPECT_EQ(mapped.st_uid, kShift + kOnDisk);
    EXPECT_EQ(mapped.st_gid, kShift + kOnDisk);
  }

  // The owners are stored, not computed per mount.
  tree = UniqueFd();
  remount();
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(stat_of(path("shared/file")).st_uid, kOnDisk);
  EXPECT_EQ(stat_of(path("shared/dir")).st_gid, kOnDisk);
}

// FS_IOC_SHUTDOWN reaches the daemon with no ids in its header once
// idmapped mounts are allowed; the daemon still refuses everyone but root.
TEST_F(Idmap, ShutdownByAnUnprivilegedCallerIsRefusedAndByRootDone) {
  const std::string m = mnt();
  auto shut_down = [m] {
    UniqueFd d = open_fd(m, O_RDONLY | O_DIRECTORY);
    if (!d.ok()) return errno;
    uint32_t flags = 0;
    return ioctl(d.get(), _IOR('X', 125, uint32_t), &flags) == 0 ? 0 : errno;
  };
  EXPECT_EQ(run_as_user(kNobody, shut_down), EPERM);
  EXPECT_EQ(write_file(path("still"), "mounted"), 0);
  EXPECT_EQ(shut_down(), 0);
  EXPECT_NE(write_file(path("after"), "x"), 0);
}

// libfuse enforces allow_root by each request's uid, which the kernel stops
// sending once idmapped mounts are allowed: it would refuse root too. So
// such a mount does not allow them and serves its owner as before.
class IdmapUnderAllowRoot : public RealMount {
 protected:
  std::string mount_options() const override { return "allow_root"; }
};

TEST_F(IdmapUnderAllowRoot, MountServesItsOwnerAndRefusesAnIdmap) {
  ASSERT_EQ(write_file(path("f"), "data"), 0);
  EXPECT_EQ(slurp(path("f")), "data");
  ASSERT_EQ(mkdir(path("d").c_str(), 0755), 0);
  EXPECT_EQ(rename(path("f").c_str(), path("d/g").c_str()), 0);
  UniqueFd userns = idmap_userns();
  ASSERT_TRUE(userns.ok()) << "user namespace: " << strerror(errno);
  errno = 0;
  EXPECT_FALSE(idmapped_clone(mnt(), userns.get()).ok());
  EXPECT_EQ(errno, EINVAL);
}

}  // namespace
}  // namespace stablefs::integ
