// POSIX namespace behaviour on a real mount: create, unlink, rename in all
// its forms, links and link counts, symlinks, name length limits. Each
// stateful test remounts and checks its state survived.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <string>

#include "tests/integration/mount_fixture.h"
#include "tests/integration/test_util.h"

namespace stablefs::integ {
namespace {

class PosixNames : public RealMount {};

TEST_F(PosixNames, CreateThenUnlinkRemovesTheName) {
  ASSERT_EQ(write_file(path("a"), "hello"), 0);
  EXPECT_EQ(slurp(path("a")), "hello");
  EXPECT_EQ(unlink(path("a").c_str()), 0);
  EXPECT_EQ(SFS_ERRNO_OF(access(path("a").c_str(), F_OK)), ENOENT);
  EXPECT_EQ(SFS_ERRNO_OF(unlink(path("a").c_str())), ENOENT);
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_EQ(SFS_ERRNO_OF(access(path("a").c_str(), F_OK)), ENOENT);
}

// O_TMPFILE (FUSE_TMPFILE, which libfuse 3.14 does not know; see
// fs/kernel_channel.h): a file with no name and no link until linkat names
// it, keeping what was written before; O_EXCL keeps it nameless, and one
// closed without a name leaves nothing behind.
TEST_F(PosixNames, TmpfileHasNoNameUntilLinkedAndKeepsItsData) {
  struct statvfs before {};
  ASSERT_EQ(statvfs(mnt().c_str(), &before), 0);
  UniqueFd fd = open_fd(mnt(), O_TMPFILE | O_RDWR, 0640);
  ASSERT_TRUE(fd.ok()) << "O_TMPFILE: " << strerror(errno);
  ASSERT_EQ(pwrite(fd.get(), "nameless", 8, 0), 8);
  struct stat st {};
  ASSERT_EQ(fstat(fd.get(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_nlink, 0u);
  ASSERT_EQ(linkat(fd.get(), "", AT_FDCWD, path("named").c_str(), AT_EMPTY_PATH), 0)
      << strerror(errno);
  EXPECT_EQ(stat_of(path("named")).st_nlink, 1u);
  EXPECT_EQ(stat_of(path("named")).st_ino, st.st_ino);
  {
    UniqueFd excl = open_fd(mnt(), O_TMPFILE | O_RDWR | O_EXCL, 0600);
    ASSERT_TRUE(excl.ok()) << strerror(errno);
    EXPECT_EQ(SFS_ERRNO_OF(linkat(excl.get(), "", AT_FDCWD, path("never").c_str(), AT_EMPTY_PATH)),
              ENOENT);
    UniqueFd closed_unnamed = open_fd(mnt(), O_TMPFILE | O_RDWR, 0600);
    ASSERT_TRUE(closed_unnamed.ok()) << strerror(errno);
  }
  fd.reset();
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_EQ(slurp(path("named")), "nameless");
  EXPECT_EQ(SFS_ERRNO_OF(access(path("never").c_str(), F_OK)), ENOENT);
  struct statvfs after {};
  ASSERT_EQ(statvfs(mnt().c_str(), &after), 0);
  EXPECT_EQ(after.f_ffree, before.f_ffree - 1) << "a nameless tmpfile kept its inode";
}

TEST_F(PosixNames, CreateExclusiveOnExistingNameFailsWithEEXIST) {
  ASSERT_EQ(write_file(path("a"), "x"), 0);
  UniqueFd fd = open_fd(path("a"), O_WRONLY | O_CREAT | O_EXCL);
  EXPECT_FALSE(fd.ok());
  EXPECT_EQ(errno, EEXIST);
}

TEST_F(PosixNames, RenameOverExistingFileReplacesItAndFreesTheOldInode) {
  ASSERT_EQ(write_file(path("src"), "new contents"), 0);
  ASSERT_EQ(write_file(path("dst"), "old contents"), 0);
  ino_t src_ino = stat_of(path("src")).st_ino;
  ASSERT_EQ(rename(path("src").c_str(), path("dst").c_str()), 0);
  EXPECT_EQ(SFS_ERRNO_OF(access(path("src").c_str(), F_OK)), ENOENT);
  EXPECT_EQ(slurp(path("dst")), "new contents");
  EXPECT_EQ(stat_of(path("dst")).st_ino, src_ino);
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_EQ(slurp(path("dst")), "new contents");
  EXPECT_EQ(stat_of(path("dst")).st_ino, src_ino) << "inode numbers are stable across mounts";
  EXPECT_EQ(SFS_ERRNO_OF(access(path("src").c_str(), F_OK)), ENOENT);
}

TEST_F(PosixNames, RenameAcrossDirectoriesMovesTheEntry) {
  ASSERT_EQ(mkdir(path("d1").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(path("d2").c_str(), 0755), 0);
  ASSERT_EQ(write_file(path("d1/f"), "moved"), 0);
  ASSERT_EQ(rename(path("d1/f").c_str(), path("d2/g").c_str()), 0);
  ASSERT_EQ(rename(path("d2").c_str(), path("d1/sub").c_str()), 0);
  EXPECT_EQ(slurp(path("d1/sub/g")), "moved");
  EXPECT_EQ(stat_of(path("d1")).st_nlink, 3u) << "moved dir's '..' now counts on d1";
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_EQ(slurp(path("d1/sub/g")), "moved");
  EXPECT_EQ(stat_of(path("d1")).st_nlink, 3u);
}

TEST_F(PosixNames, RenameNoreplaceOnExistingTargetFailsWithEEXIST) {
  ASSERT_EQ(write_file(path("a"), "A"), 0);
  ASSERT_EQ(write_file(path("b"), "B"), 0);
  EXPECT_EQ(SFS_ERRNO_OF(renameat2(AT_FDCWD, path("a").c_str(), AT_FDCWD, path("b").c_str(),
                                   RENAME_NOREPLACE)),
            EEXIST);
  EXPECT_EQ(slurp(path("a")), "A");
  EXPECT_EQ(slurp(path("b")), "B");
  EXPECT_EQ(renameat2(AT_FDCWD, path("a").c_str(), AT_FDCWD, path("c").c_str(), RENAME_NOREPLACE),
            0);
  EXPECT_EQ(slurp(path("c")), "A");
}

TEST_F(PosixNames, RenameExchangeSwapsTheTwoEntries) {
  ASSERT_EQ(write_file(path("a"), "contents of a"), 0);
  ASSERT_EQ(mkdir(path("d").c_str(), 0755), 0);
  ASSERT_EQ(write_file(path("d/inner"), "inside d"), 0);
  ino_t a_ino = stat_of(path("a")).st_ino;
  ASSERT_EQ(renameat2(AT_FDCWD, path("a").c_str(), AT_FDCWD, path("d").c_str(), RENAME_EXCHANGE),
            0);
  EXPECT_EQ(slurp(path("d")), "contents of a");
  EXPECT_EQ(stat_of(path("d")).st_ino, a_ino);
  EXPECT_EQ(slurp(path("a/inner")), "inside d");
  EXPECT_EQ(SFS_ERRNO_OF(renameat2(AT_FDCWD, path("a").c_str(), AT_FDCWD, path("missing").c_str(),
                                   RENAME_EXCHANGE)),
            ENOENT);
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_EQ(slurp(path("d")), "contents of a");
  EXPECT_EQ(slurp(path("a/inner")), "inside d");
}

// RENAME_WHITEOUT (overlayfs's upper layer, xfstests' renameat2 -w): the
// source name is left to a whiteout, a character device 0:0 of mode 0
// that readdir reports as DT_CHR.
TEST_F(PosixNames, RenameWhiteoutLeavesAWhiteoutUnderTheSourceName) {
  ASSERT_EQ(write_file(path("a"), "contents of a"), 0);
  ino_t a_ino = stat_of(path("a")).st_ino;
  ASSERT_EQ(renameat2(AT_FDCWD, path("a").c_str(), AT_FDCWD, path("b").c_str(), RENAME_WHITEOUT),
            0)
      << strerror(errno);
  auto expect_whiteout = [&] {
    struct stat st = stat_of(path("a"));
    EXPECT_TRUE(S_ISCHR(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0u);
    EXPECT_EQ(st.st_rdev, makedev(0, 0));
    EXPECT_EQ(st.st_uid, geteuid());
    EXPECT_EQ(slurp(path("b")), "contents of a");
    EXPECT_EQ(stat_of(path("b")).st_ino, a_ino);
    DIR* d = opendir(mnt().c_str());
    ASSERT_NE(d, nullptr);
    unsigned char type = DT_UNKNOWN;
    while (struct dirent* e = readdir(d))
      if (std::string(e->d_name) == "a") type = e->d_type;
    closedir(d);
    EXPECT_EQ(type, DT_CHR);
  };
  expect_whiteout();
  EXPECT_EQ(SFS_ERRNO_OF(renameat2(AT_FDCWD, path("b").c_str(), AT_FDCWD, path("a").c_str(),
                                   RENAME_WHITEOUT | RENAME_EXCHANGE)),
            EINVAL);
  ASSERT_NO_FATAL_FAILURE(remount());
  expect_whiteout();
}

TEST_F(PosixNames, RenameDirectoryIntoItsOwnSubdirectoryFailsWithEINVAL) {
  ASSERT_EQ(mkdir(path("top").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(path("top/sub").c_str(), 0755), 0);
  EXPECT_EQ(SFS_ERRNO_OF(rename(path("top").c_str(), path("top/sub/top").c_str())), EINVAL);
  EXPECT_TRUE(S_ISDIR(stat_of(path("top/sub")).st_mode));
}

TEST_F(PosixNames, RenameDirectoryOverNonEmptyDirectoryFailsWithENOTEMPTY) {
  ASSERT_EQ(mkdir(path("a").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(path("b").c_str(), 0755), 0);
  ASSERT_EQ(write_file(path("b/f"), "x"), 0);
  EXPECT_EQ(SFS_ERRNO_OF(rename(path("a").c_str(), path("b").c_str())), ENOTEMPTY);
  ASSERT_EQ(write_file(path("file"), "x"), 0);
  EXPECT_EQ(SFS_ERRNO_OF(rename(path("file").c_str(), path("a").c_str())), EISDIR);
  EXPECT_EQ(SFS_ERRNO_OF(rename(path("a").c_str(), path("file").c_str())), ENOTDIR);
}

TEST_F(PosixNames, RmdirOfNonEmptyDirectoryFailsWithENOTEMPTY) {
  ASSERT_EQ(mkdir(path("d").c_str(), 0755), 0);
  ASSERT_EQ(write_file(path("d/f"), "x"), 0);
  EXPECT_EQ(SFS_ERRNO_OF(rmdir(path("d").c_str())), ENOTEMPTY);
  ASSERT_EQ(unlink(path("d/f").c_str()), 0);
  EXPECT_EQ(rmdir(path("d").c_str()), 0);
  EXPECT_EQ(SFS_ERRNO_OF(rmdir(path("d").c_str())), ENOENT);
  ASSERT_EQ(write_file(path("f"), "x"), 0);
  EXPECT_EQ(SFS_ERRNO_OF(rmdir(path("f").c_str())), ENOTDIR);
  EXPECT_EQ(SFS_ERRNO_OF(unlink(mnt().c_str())), EISDIR);
}

TEST_F(PosixNames, HardLinksShareTheInodeAndCountLinks) {
  ASSERT_EQ(write_file(path("f"), "shared"), 0);
  ASSERT_EQ(link(path("f").c_str(), path("g").c_str()), 0);
  ASSERT_EQ(mkdir(path("d").c_str(), 0755), 0);
  ASSERT_EQ(link(path("f").c_str(), path("d/h").c_str()), 0);
  struct stat f = stat_of(path("f"));
  EXPECT_EQ(f.st_nlink, 3u);
  EXPECT_EQ(stat_of(path("g")).st_ino, f.st_ino);
  EXPECT_EQ(stat_of(path("d/h")).st_ino, f.st_ino);
  EXPECT_EQ(SFS_ERRNO_OF(link(path("f").c_str(), path("g").c_str())), EEXIST);
  EXPECT_EQ(SFS_ERRNO_OF(link(path("d").c_str(), path("dlink").c_str())), EPERM);
  ASSERT_EQ(unlink(path("f").c_str()), 0);
  EXPECT_EQ(stat_of(path("g")).st_nlink, 2u);
  EXPECT_EQ(slurp(path("g")), "shared");
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_EQ(stat_of(path("g")).st_nlink, 2u);
  EXPECT_EQ(stat_of(path("d/h")).st_ino, stat_of(path("g")).st_ino);
  EXPECT_EQ(slurp(path("d/h")), "shared");
}

TEST_F(PosixNames, UnlinkedOpenFileStaysReadableUntilClosed) {
  ASSERT_EQ(write_file(path("f"), "still here"), 0);
  UniqueFd fd = open_fd(path("f"), O_RDONLY);
  ASSERT_TRUE(fd.ok());
  ASSERT_EQ(unlink(path("f").c_str()), 0);
  char buf[32] = {};
  EXPECT_EQ(pread(fd.get(), buf, sizeof(buf), 0), 10);
  EXPECT_EQ(std::string(buf), "still here");
  struct stat st;
  ASSERT_EQ(fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_nlink, 0u);
}

TEST_F(PosixNames, MkdirAndRmdirAdjustTheParentLinkCount) {
  ASSERT_EQ(mkdir(path("p").c_str(), 0755), 0);
  EXPECT_EQ(stat_of(path("p")).st_nlink, 2u);
  nlink_t root_before = stat_of(mnt()).st_nlink;
  ASSERT_EQ(mkdir(path("p/c1").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(path("p/c2").c_str(), 0755), 0);
  ASSERT_EQ(write_file(path("p/file"), ""), 0);
  EXPECT_EQ(stat_of(path("p")).st_nlink, 4u) << "2 + one per subdirectory, files don't count";
  EXPECT_EQ(stat_of(mnt()).st_nlink, root_before);
  ASSERT_EQ(rmdir(path("p/c2").c_str()), 0);
  EXPECT_EQ(stat_of(path("p")).st_nlink, 3u);
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_EQ(stat_of(path("p")).st_nlink, 3u);
  EXPECT_EQ(stat_of(path("p/c1")).st_nlink, 2u);
}

TEST_F(PosixNames, SymlinksOfShortMediumAndLongTargetsReadBackExactly) {
  const std::string short_target = "target/file";
  const std::string medium(300, 'm');
  std::string long_target;
  while (long_target.size() < 4000) long_target += "dir" + std::to_string(long_target.size()) + "/";
  long_target.resize(4000);
  ASSERT_EQ(symlink(short_target.c_str(), path("s").c_str()), 0);
  ASSERT_EQ(symlink(medium.c_str(), path("m").c_str()), 0);
  ASSERT_EQ(symlink(long_target.c_str(), path("l").c_str()), 0);
  ASSERT_EQ(write_file(path("real"), "through the link"), 0);
  ASSERT_EQ(symlink("real", path("rel").c_str()), 0);

  auto check = [&] {
    auto rl = [&](const char* name) {
      std::string buf(8192, '\0');
      ssize_t n = readlink(path(name).c_str(), buf.data(), buf.size());
      return n < 0 ? "<errno " + std::to_string(errno) + ">" : buf.substr(0, size_t(n));
    };
    EXPECT_EQ(rl("s"), short_target);
    EXPECT_EQ(rl("m"), medium);
    EXPECT_EQ(rl("l"), long_target);
    struct stat st = stat_of(path("l"));
    EXPECT_TRUE(S_ISLNK(st.st_mode));
    EXPECT_EQ(st.st_size, 4000);
    EXPECT_EQ(stat_of(path("m")).st_size, 300);
    EXPECT_EQ(slurp(path("rel")), "through the link");
  };
  check();
  char small[16];
  EXPECT_EQ(SFS_ERRNO_OF(readlink(path("real").c_str(), small, sizeof(small))), EINVAL);
  ASSERT_NO_FATAL_FAILURE(remount());
  check();
}

TEST_F(PosixNames, NameOf256BytesFailsWithENAMETOOLONGAnd255Works) {
  const std::string n255(255, 'x');
  const std::string n256(256, 'y');
  UniqueFd fd = open_fd(path(n256), O_WRONLY | O_CREAT);
  EXPECT_FALSE(fd.ok());
  EXPECT_EQ(errno, ENAMETOOLONG);
  EXPECT_EQ(SFS_ERRNO_OF(mkdir(path(n256).c_str(), 0755)), ENAMETOOLONG);
  EXPECT_EQ(SFS_ERRNO_OF(access(path(n256).c_str(), F_OK)), ENAMETOOLONG);
  EXPECT_EQ(SFS_ERRNO_OF(symlink("t", path(n256).c_str())), ENAMETOOLONG);
  ASSERT_EQ(write_file(path(n255), "max"), 0);
  EXPECT_EQ(SFS_ERRNO_OF(rename(path(n255).c_str(), path(n256).c_str())), ENAMETOOLONG);
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_EQ(slurp(path(n255)), "max");
}

}  // namespace
}  // namespace stablefs::integ
