// Damage in the unmounted image is caught: a flipped byte in a file's data
// block gives EIO (never the corrupt bytes) and is named in the daemon log
// and by fsck --scrub; a flipped byte in metadata is reported by mount or
// fsck, and nothing crashes.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <set>
#include <string>

#include "tests/integration/image_file.h"
#include "tests/integration/mount_fixture.h"
#include "tests/integration/test_util.h"

namespace stablefs::integ {
namespace {

constexpr int kFsckErrorsLeft = 4;  // e2fsck's "errors left uncorrected"

class Corruption : public RealMount {
 protected:
  // Small, so scanning the image for a block is quick.
  std::string image_size() const override { return "128M"; }

  Superblock superblock() {
    std::string why;
    auto sb = load_superblock(image(), &why);
    EXPECT_TRUE(sb.has_value()) << "cannot decode the superblock: " << why;
    return sb.value_or(Superblock{});
  }
};

bool is_integrity_errno(int e) { return e == EIO || e == EUCLEAN; }

TEST_F(Corruption, FlippedDataByteGivesEIOAndIsNamedInLogAndByScrub) {
  const std::vector<uint8_t> victim = unique_block_pattern(1);
  const std::vector<uint8_t> bystander = unique_block_pattern(2);
  ASSERT_EQ(write_file(path("victim"), std::string(victim.begin(), victim.end())), 0);
  ASSERT_EQ(write_file(path("bystander"), std::string(bystander.begin(), bystander.end())), 0);
  const uint64_t ino = stat_of(path("victim")).st_ino;
  ASSERT_NO_FATAL_FAILURE(unmount_only());

  const Superblock sb = superblock();
  auto blocks = find_blocks_equal(image(), sb.data_start, victim);
  ASSERT_EQ(blocks.size(), 1u) << "the victim's data should be in exactly one block";
  const uint64_t block = blocks[0];
  ASSERT_TRUE(flip_byte(image(), block * kBlockSize + 1234));

  ASSERT_NO_FATAL_FAILURE(mount());
  {
    UniqueFd fd = open_fd(path("victim"), O_RDONLY);
    ASSERT_TRUE(fd.ok()) << strerror(errno);
    char buf[4096];
    EXPECT_EQ(SFS_ERRNO_OF(pread(fd.get(), buf, sizeof(buf), 0)), EIO);
    EXPECT_EQ(SFS_ERRNO_OF(pread(fd.get(), buf, 1, 4000)), EIO) << "a partial read of the block";
  }
  EXPECT_EQ(slurp(path("bystander")), std::string(bystander.begin(), bystander.end()));
  const std::string log = daemon_log();
  EXPECT_NE(log.find("integrity error"), std::string::npos) << log;
  EXPECT_NE(log.find("inode " + std::to_string(ino)), std::string::npos) << log;
  EXPECT_NE(log.find("offset 0"), std::string::npos) << log;
  EXPECT_NE(log.find("block " + std::to_string(block)), std::string::npos) << log;
  ASSERT_NO_FATAL_FAILURE(unmount_only());

  const uint64_t before = hash_file(image());
  CommandResult scrub = run_fsck({"--scrub"});
  EXPECT_TRUE(scrub.exited) << scrub.describe();
  EXPECT_EQ(scrub.exit_code, kFsckErrorsLeft) << scrub.output;
  EXPECT_NE(scrub.output.find(std::to_string(block)), std::string::npos)
      << "scrub output should name block " << block << ":\n"
      << scrub.output;
  EXPECT_EQ(hash_file(image()), before)
      << "fsck writes nothing but a journal replay and a superblock copy";
}

// The bug this guards against: a READ whose range held a bad block was
// answered with the bytes before it, which the kernel takes for end of
// file, so `cat` printed 8 KiB of a 1 MiB file and exited 0. Every read
// that touches the bad block must fail with EIO, every read that does not
// must succeed, and the size must never change.
TEST_F(Corruption, BadBlockInTheMiddleOfAFileIsEIONeverEndOfFile) {
  constexpr size_t kPages = 256;  // 1 MiB
  constexpr size_t kBad = 2;      // the third block
  std::string content;
  for (size_t i = 0; i < kPages; i++) {
    std::vector<uint8_t> b = unique_block_pattern(1000 + i);
    content.append(b.begin(), b.end());
  }
  ASSERT_EQ(write_file(path("big"), content), 0);
  ASSERT_NO_FATAL_FAILURE(unmount_only());
  const Superblock sb = superblock();
  auto blocks = find_blocks_equal(image(), sb.data_start, unique_block_pattern(1000 + kBad));
  ASSERT_EQ(blocks.size(), 1u);
  ASSERT_TRUE(flip_byte(image(), blocks[0] * kBlockSize + 77));
  ASSERT_NO_FATAL_FAILURE(mount());

  // A sequential reader (cat, cp) gets the good prefix and then EIO, never
  // a clean end of file.
  {
    UniqueFd fd = open_fd(path("big"), O_RDONLY);
    ASSERT_TRUE(fd.ok()) << strerror(errno);
    std::vector<char> buf(1 << 20);
    size_t total = 0;
    int error = 0;
    for (;;) {
      ssize_t n = read(fd.get(), buf.data(), buf.size());
      if (n < 0) {
        error = errno;
        break;
      }
      if (n == 0) break;
      EXPECT_TRUE(same_bytes(std::string_view(buf.data(), size_t(n)),
                             std::string_view(content).substr(total, size_t(n))));
      total += size_t(n);
    }
    EXPECT_EQ(error, EIO) << "read(2) reached end of file after " << total << " bytes";
    EXPECT_EQ(total, kBad * kBlockSize) << "the good prefix before the bad block";
  }
  EXPECT_EQ(stat_of(path("big")).st_size, off_t(content.size())) << "the kernel shrank the file";

  // `dd bs=4k`: every block but the bad one reads back intact, in any order.
  {
    UniqueFd fd = open_fd(path("big"), O_RDONLY);
    ASSERT_TRUE(fd.ok()) << strerror(errno);
    char buf[kBlockSize];
    for (size_t i = kPages; i-- > 0;) {
      ssize_t n = pread(fd.get(), buf, sizeof buf, off_t(i * kBlockSize));
      if (i == kBad) {
        EXPECT_EQ(SFS_ERRNO_OF(n), EIO) << "block " << i;
        continue;
      }
      ASSERT_EQ(n, ssize_t(kBlockSize)) << "block " << i << ": " << strerror(errno);
      EXPECT_TRUE(same_bytes(std::string_view(buf, kBlockSize),
                             std::string_view(content).substr(i * kBlockSize, kBlockSize)))
          << "block " << i;
    }
    // A large read that spans the bad block stops before it (read(2)'s
    // short count), and one that starts on it fails.
    std::vector<char> big(64 * kBlockSize);
    EXPECT_EQ(pread(fd.get(), big.data(), big.size(), kBlockSize),
              ssize_t((kBad - 1) * kBlockSize));
    EXPECT_EQ(SFS_ERRNO_OF(pread(fd.get(), big.data(), big.size(), kBad * kBlockSize)), EIO);
  }
  EXPECT_EQ(stat_of(path("big")).st_size, off_t(content.size()));
  // What the kernel cached must not survive as a shorter file either.
  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_EQ(stat_of(path("big")).st_size, off_t(content.size()));
}

// A long symlink's target lives in a data block: damage there is EIO from
// readlink, never an empty or shortened target.
TEST_F(Corruption, BadSymlinkBlockIsEIONeverAnEmptyTarget) {
  const std::string target = "/" + std::string(300, 't') + "/end";
  ASSERT_EQ(symlink(target.c_str(), path("ln").c_str()), 0);
  ASSERT_NO_FATAL_FAILURE(unmount_only());
  const Superblock sb = superblock();
  std::vector<uint8_t> block(kBlockSize, 0);
  std::copy(target.begin(), target.end(), block.begin());
  auto blocks = find_blocks_equal(image(), sb.data_start, block);
  ASSERT_EQ(blocks.size(), 1u) << "the target should be in exactly one block";
  ASSERT_TRUE(flip_byte(image(), blocks[0] * kBlockSize + 5));
  ASSERT_NO_FATAL_FAILURE(mount());
  char buf[8192];
  EXPECT_EQ(SFS_ERRNO_OF(readlink(path("ln").c_str(), buf, sizeof buf)), EIO);
  EXPECT_EQ(SFS_ERRNO_OF(readlink(path("ln").c_str(), buf, sizeof buf)), EIO)
      << "the second readlink must not be served an empty cached target";
}

// A damaged xattr block: get and list fail, never answer "no attributes".
TEST_F(Corruption, BadXattrBlockIsAnErrorNeverAnEmptyList) {
  ASSERT_EQ(write_file(path("f"), "data"), 0);
  ASSERT_EQ(setxattr(path("f").c_str(), "user.k", "value", 5, 0), 0);
  const uint64_t ino = stat_of(path("f")).st_ino;
  ASSERT_NO_FATAL_FAILURE(unmount_only());
  const Superblock sb = superblock();
  auto blocks = find_meta_blocks(image(), sb.data_start, kMagicXattr, ino);
  ASSERT_EQ(blocks.size(), 1u);
  ASSERT_TRUE(flip_byte(image(), blocks[0] * kBlockSize + kMetaHeaderSize + 2));
  ASSERT_NO_FATAL_FAILURE(mount());
  char buf[256];
  EXPECT_TRUE(is_integrity_errno(SFS_ERRNO_OF(getxattr(path("f").c_str(), "user.k", buf, sizeof buf))));
  EXPECT_TRUE(is_integrity_errno(SFS_ERRNO_OF(listxattr(path("f").c_str(), buf, sizeof buf))));
  EXPECT_EQ(slurp(path("f")), "data") << "the file's data is not affected";
}

// Damaged metadata must be reported by fsck, and by the daemon either as a
// refused mount or as EIO/EUCLEAN on access; the daemon never dies by a signal.
class MetadataCorruption : public Corruption {
 protected:
  void expect_fsck_reports_damage() {
    const uint64_t before = hash_file(image());
    CommandResult fsck = run_fsck({});
    EXPECT_TRUE(fsck.exited) << "fsck " << fsck.describe() << "\n" << fsck.output;
    EXPECT_EQ(fsck.exit_code, kFsckErrorsLeft) << "fsck missed the damage:\n" << fsck.output;
    EXPECT_NE(fsck.output.find("ERRORS FOUND"), std::string::npos) << fsck.output;
    EXPECT_EQ(hash_file(image()), before)
        << "fsck writes nothing but a journal replay and a superblock copy";
  }

  // Runs probe() on the mount if the daemon mounts; the daemon must either
  // refuse with an exit code or serve the probe with an integrity errno.
  template <class Probe>
  void expect_mount_refuses_or_errors(Probe probe) {
    DaemonLaunch l = launch_daemon(image(), mnt(), {});
    if (!l.mounted) {
      EXPECT_FALSE(l.timed_out) << "daemon neither mounted nor exited";
      EXPECT_TRUE(WIFEXITED(l.status)) << describe_wait_status(l.status) << "\n" << l.log;
      EXPECT_NE(WEXITSTATUS(l.status), 0);
      EXPECT_FALSE(l.log.empty()) << "a refused mount must say why";
      return;
    }
    int e = probe();
    EXPECT_TRUE(is_integrity_errno(e)) << "access to damaged metadata gave errno " << e << " ("
                                       << strerror(e) << "), want EIO or EUCLEAN";
    std::string log = read_file(l.log_path);
    int status = stop_daemon(l.pid, mnt());
    EXPECT_TRUE(WIFEXITED(status)) << "daemon " << describe_wait_status(status) << "\n" << log;
  }
};

TEST_F(MetadataCorruption, FlippedByteInRootInodeBlockIsReportedWithoutCrash) {
  ASSERT_EQ(write_file(path("f"), "data"), 0);
  ASSERT_NO_FATAL_FAILURE(unmount_only());
  const Superblock sb = superblock();
  const uint64_t block = inode_block(sb, kRootIno);
  ASSERT_EQ(block, sb.inode_table_start);
  ASSERT_TRUE(flip_byte(image(), block * kBlockSize + kMetaHeaderSize + 20));

  expect_fsck_reports_damage();
  expect_mount_refuses_or_errors([&] {
    struct stat st;
    if (::stat(mnt().c_str(), &st) != 0) return errno;
    if (int e = list_errno(mnt()); e != 0) return e;
    return ::stat(path("f").c_str(), &st) == 0 ? 0 : errno;
  });
}

TEST_F(MetadataCorruption, FlippedByteInDirectoryBlockIsReportedWithoutCrash) {
  ASSERT_EQ(mkdir(path("d").c_str(), 0755), 0);
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(write_file(path("d/file" + std::to_string(i)), "x"), 0);
  }
  ASSERT_EQ(write_file(path("outside"), "fine"), 0);
  const uint64_t dir_ino = stat_of(path("d")).st_ino;
  ASSERT_NO_FATAL_FAILURE(unmount_only());
  const Superblock sb = superblock();
  auto blocks = find_meta_blocks(image(), sb.data_start, kMagicDirectory, dir_ino);
  ASSERT_FALSE(blocks.empty()) << "no directory block (magic DIRB, owner " << dir_ino
                               << ") found after data_start " << sb.data_start;
  for (uint64_t b : blocks) ASSERT_TRUE(flip_byte(image(), b * kBlockSize + kMetaHeaderSize + 3));

  expect_fsck_reports_damage();
  expect_mount_refuses_or_errors([&] {
    EXPECT_EQ(slurp(path("outside")), "fine") << "damage elsewhere must not spread";
    struct stat st;
    if (::stat(path("d/file7").c_str(), &st) == 0) return list_errno(path("d"));
    return errno;
  });
}

// A listing of a directory whose entries name inodes in an unreadable
// inode-table block holds every name or fails: readdirplus looks each
// entry up, and a lookup that fails after the first entry must not end
// the listing as if that were all (issue 15, item 5). The entries before
// the bad block fill the first reply; the failing one is first in the
// next call, which reports the error (or the kernel asks a plain READDIR,
// which lists the names without looking them up).
TEST_F(MetadataCorruption, ListingPastAnUnreadableInodeHoldsEveryNameOrFails) {
  ASSERT_EQ(mkdir(path("d").c_str(), 0755), 0);
  std::set<std::string> names;
  for (int i = 0; i < 3 * int(kInodesPerBlock); ++i) {
    std::string n = "file" + std::to_string(i);
    ASSERT_EQ(write_file(path("d/" + n), "x"), 0);
    names.insert(n);
  }
  const uint64_t first = stat_of(path("d/file0")).st_ino;
  ASSERT_NO_FATAL_FAILURE(unmount_only());
  const Superblock sb = superblock();
  // The table block after the first file's: its inodes come later in the
  // listing (entries are listed in the order they were made).
  const uint64_t bad = inode_block(sb, first) + 1;
  ASSERT_TRUE(flip_byte(image(), bad * kBlockSize + kMetaHeaderSize + 20));
  DaemonLaunch l = launch_daemon(image(), mnt(), {});
  ASSERT_TRUE(l.mounted) << l.log;
  std::set<std::string> seen;
  DIR* d = opendir(path("d").c_str());
  ASSERT_NE(d, nullptr) << strerror(errno);
  errno = 0;
  while (dirent* e = readdir(d))
    if (std::string n = e->d_name; n != "." && n != "..") seen.insert(n);
  const int error = errno;
  closedir(d);
  if (error == 0)
    EXPECT_EQ(seen, names) << "the listing ended early with no error (" << seen.size() << " of "
                           << names.size() << " names)";
  else
    EXPECT_TRUE(is_integrity_errno(error)) << strerror(error);
  int status = stop_daemon(l.pid, mnt());
  EXPECT_TRUE(WIFEXITED(status)) << describe_wait_status(status);
}

}  // namespace
}  // namespace stablefs::integ
