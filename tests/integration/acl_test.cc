// POSIX ACLs on a real mount: the daemon asks for FUSE_POSIX_ACL and
// FUSE_DONT_MASK (fs/capabilities.cc), the kernel enforces ACLs and the
// engine stores them and keeps the mode in step (core/acl_fs.cc). Driven
// through setfacl/getfacl (Debian package acl) as a user would; the
// unprivileged caller is a forked child that becomes uid/gid 65534.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <string>

#include "tests/integration/mount_fixture.h"
#include "tests/integration/test_util.h"

namespace stablefs::integ {
namespace {

constexpr uid_t kNobody = 65534;

class PosixAcl : public SharedMount {  // nobody must reach the mount
 protected:
  void SetUp() override {
    SharedMount::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(run_command({"setfacl", "--version"}).ok())
        << "setfacl is missing: install the Debian package acl (scripts/deps.sh)";
  }

  void setfacl(const std::vector<std::string>& args, const std::string& p) {
    std::vector<std::string> argv{"setfacl"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back(p);
    CommandResult r = run_command(argv);
    ASSERT_TRUE(r.ok()) << "setfacl: " << r.describe() << "\n" << r.output;
  }
  // getfacl's entries, without the "# file/owner/group" header.
  std::string getfacl(const std::string& p) {
    CommandResult r = run_command({"getfacl", "--omit-header", "--numeric", "--absolute-names", p});
    EXPECT_TRUE(r.ok()) << "getfacl: " << r.describe() << "\n" << r.output;
    return r.output;
  }
  mode_t mode_of(const std::string& p) { return stat_of(p).st_mode & 07777; }

  // Runs fn as uid/gid nobody in a child; fn returns 0 or an errno.
  int as_nobody(const std::function<int()>& fn) { return run_as_user(kNobody, fn); }
};

TEST_F(PosixAcl, SetfaclSetsTheModeAndSurvivesRemount) {
  std::string f = path("f");
  ASSERT_EQ(write_file(f, "data", 0600), 0);
  setfacl({"-m", "u:65534:rw,g::r,m::rw"}, f);
  const std::string want =
      "user::rw-\nuser:65534:rw-\ngroup::r--\nmask::rw-\nother::---\n\n";
  EXPECT_EQ(getfacl(f), want);
  EXPECT_EQ(mode_of(f), 0660u) << "the mask is the group bits";
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_EQ(getfacl(f), want);
  EXPECT_EQ(mode_of(f), 0660u);
  ASSERT_NO_FATAL_FAILURE(unmount_only());
  CommandResult fsck = run_fsck({"-n"});
  EXPECT_TRUE(fsck.ok()) << fsck.describe() << "\n" << fsck.output;
}

TEST_F(PosixAcl, ChmodRewritesTheMask) {
  std::string f = path("f");
  ASSERT_EQ(write_file(f, "data", 0600), 0);
  setfacl({"-m", "u:65534:rwx,m::rwx"}, f);
  ASSERT_EQ(chmod(f.c_str(), 0640), 0);
  EXPECT_EQ(getfacl(f), "user::rw-\nuser:65534:rwx\t#effective:r--\ngroup::---\nmask::r--\n"
                        "other::---\n\n");
}

TEST_F(PosixAcl, DefaultAclIsInheritedAndTheUmaskIgnored) {
  std::string d = path("d");
  ASSERT_EQ(mkdir(d.c_str(), 0755), 0);
  setfacl({"-d", "-m", "u:65534:rwx,g::rx,o::-"}, d);
  mode_t old = umask(077);
  int fd = ::open((d + "/f").c_str(), O_CREAT | O_WRONLY, 0666);
  int made = mkdir((d + "/sub").c_str(), 0777);
  int outside = ::open(path("outside").c_str(), O_CREAT | O_WRONLY, 0666);
  umask(old);
  ASSERT_GE(fd, 0);
  ::close(fd);
  ASSERT_EQ(made, 0);
  ASSERT_GE(outside, 0);
  ::close(outside);
  EXPECT_EQ(mode_of(path("outside")), 0600u) << "no default ACL: the umask applies";
  EXPECT_EQ(mode_of(d + "/f"), 0660u) << "masked by the default ACL, not by umask 077";
  EXPECT_EQ(getfacl(d + "/f"),
            "user::rw-\nuser:65534:rwx\t#effective:rw-\ngroup::r-x\t#effective:r--\n"
            "mask::rw-\nother::---\n\n");
  EXPECT_EQ(mode_of(d + "/sub"), 0770u);
  EXPECT_NE(getfacl(d + "/sub").find("default:user:65534:rwx\n"), std::string::npos)
      << "a subdirectory passes the default ACL on";
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_EQ(mode_of(d + "/f"), 0660u);
  EXPECT_NE(getfacl(d + "/sub").find("default:user:65534:rwx\n"), std::string::npos);
}

TEST_F(PosixAcl, TheKernelEnforcesANamedUserEntry) {
  std::string f = path("f");
  ASSERT_EQ(write_file(f, "data", 0600), 0);
  ASSERT_EQ(as_nobody([&] { return open_errno(f, O_RDONLY); }), EACCES) << "setup";
  setfacl({"-m", "u:65534:r"}, f);
  EXPECT_EQ(as_nobody([&] { return open_errno(f, O_RDONLY); }), 0);
  EXPECT_EQ(as_nobody([&] { return open_errno(f, O_WRONLY); }), EACCES);
  // chmod g-rwx is mask::---: the entry no longer grants anything.
  ASSERT_EQ(chmod(f.c_str(), 0600), 0);
  EXPECT_EQ(as_nobody([&] { return open_errno(f, O_RDONLY); }), EACCES);
  ASSERT_EQ(chmod(f.c_str(), 0640), 0);
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_EQ(as_nobody([&] { return open_errno(f, O_RDONLY); }), 0) << "after remount";
  setfacl({"-b"}, f);
  EXPECT_EQ(as_nobody([&] { return open_errno(f, O_RDONLY); }), EACCES) << "after setfacl -b";
}

// The VFS rule for chmod holds for the mode an access ACL sets: an owner
// outside the file's group loses setgid (xfstests generic/375).
TEST_F(PosixAcl, SetfaclByAnOwnerOutsideTheGroupClearsSetgid) {
  std::string f = path("f");
  ASSERT_EQ(write_file(f, "data", 0644), 0);
  ASSERT_EQ(chown(f.c_str(), kNobody, 0), 0);
  ASSERT_EQ(chmod(f.c_str(), 02755), 0);
  auto setfacl_as_nobody = [&] {
    return as_nobody([&] {
      execlp("setfacl", "setfacl", "-m", "u::rwx,g::rwx,o::rwx", f.c_str(), (char*)nullptr);
      return 127;
    });
  };
  ASSERT_EQ(setfacl_as_nobody(), 0);
  EXPECT_EQ(mode_of(f), 0777u);
  // A member of the group (here: the group is nobody's own) keeps it.
  ASSERT_EQ(chown(f.c_str(), kNobody, kNobody), 0);
  ASSERT_EQ(chmod(f.c_str(), 02755), 0);
  ASSERT_EQ(setfacl_as_nobody(), 0);
  EXPECT_EQ(mode_of(f), 02777u);
}

}  // namespace
}  // namespace stablefs::integ
