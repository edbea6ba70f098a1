// fsck.stablefs keeps the contract its --help states:
//   -n writes nothing, even when the journal needs replaying (it replays
//      into memory and checks that), and a correction it did not make is
//      exit 4;
//   a plain run writes only the journal replay and a superblock copy, and
//      says so with exit 1;
//   -p repairs what is safe unattended and -y the rest it can (the
//      repairs themselves are tested in tests/unit/fsck_repair_test.cc);
//   the cheap cross-checks (block counts, xattr records, orphans) find what
//      they promise to find.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <string>

#include "core/base/endian.h"
#include "core/base/format.h"
#include "tests/integration/image_file.h"
#include "tests/integration/mount_fixture.h"
#include "tests/integration/test_util.h"

namespace stablefs::integ {
namespace {

constexpr int kExitClean = 0;
constexpr int kExitCorrected = 1;
constexpr int kExitUncorrected = 4;
constexpr int kExitUsage = 16;

class Fsck : public RealMount {
 protected:
  std::string image_size() const override { return "64M"; }
  bool mount_in_setup() const override { return false; }

  // Runs fsck with args on image() and expects exit `code`.
  CommandResult expect_fsck(const std::vector<std::string>& args, int code) {
    CommandResult r = run_fsck(args);
    std::string flags;
    for (const auto& a : args) flags += " " + a;
    EXPECT_TRUE(r.exited) << "fsck" << flags << ": " << r.describe() << "\n" << r.output;
    EXPECT_EQ(r.exit_code, code) << "fsck" << flags << ":\n" << r.output;
    return r;
  }

  // A daemon killed with SIGKILL after `work` ran on its mount: the image
  // is left with committed, not yet checkpointed journal transactions.
  template <class Work>
  void run_then_kill_daemon(Work work) {
    DaemonLaunch l = launch_daemon(image(), mnt(), {});
    ASSERT_TRUE(l.mounted) << describe_wait_status(l.status) << "\n" << l.log;
    work();
    ASSERT_EQ(kill(l.pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(l.pid, &status, 0), l.pid);
    ASSERT_TRUE(run_command({"fusermount3", "-uz", mnt()}, std::chrono::seconds(30)).ok());
  }

  // Rewrites inode `ino` in the image through edit(DiskInode&), resealing
  // its table block so that only fsck's cross-checks can notice.
  template <class Edit>
  void edit_inode(uint64_t ino, Edit edit) {
    std::string why;
    auto sb = load_superblock(image(), &why);
    ASSERT_TRUE(sb.has_value()) << why;
    const uint64_t nr = inode_block(*sb, ino);
    std::vector<uint8_t> blk = read_block(image(), nr);
    ASSERT_EQ(blk.size(), kBlockSize);
    uint8_t* rec = blk.data() + kMetaHeaderSize + inode_slot(ino) * kInodeSize;
    DiskInode d = decode_inode(rec);
    edit(d);
    encode_inode(rec, d);
    seal_meta_block(blk.data(), nr, decode_meta_header(blk.data()).txid);
    ASSERT_TRUE(write_block(image(), nr, blk));
  }

  // Rewrites both superblock copies through edit(Superblock&).
  template <class Edit>
  void edit_superblocks(Edit edit) {
    std::string why;
    auto sb = load_superblock(image(), &why);
    ASSERT_TRUE(sb.has_value()) << why;
    edit(*sb);
    for (uint64_t nr : {kSuperblockA, kSuperblockB}) {
      std::vector<uint8_t> blk(kBlockSize);
      encode_superblock(blk.data(), *sb, nr);
      ASSERT_TRUE(write_block(image(), nr, blk));
    }
  }

  static bool has(const CommandResult& r, const std::string& what) {
    return r.output.find(what) != std::string::npos;
  }
};

TEST_F(Fsck, ReadOnlyWritesNothingWhenTheJournalNeedsReplayAndAPlainRunReplays) {
  const std::string data(3 * kBlockSize + 100, 'j');
  ASSERT_NO_FATAL_FAILURE(run_then_kill_daemon([&] {
    ASSERT_EQ(mkdir(path("d").c_str(), 0755), 0);
    ASSERT_EQ(write_file(path("d/f"), data), 0);
    UniqueFd f = open_fd(path("d/f"), O_RDONLY);
    ASSERT_EQ(fsync(f.get()), 0);
    UniqueFd d = open_fd(path("d"), O_RDONLY | O_DIRECTORY);
    ASSERT_EQ(fsync(d.get()), 0);
  }));

  const uint64_t before = hash_file(image());
  CommandResult ro = expect_fsck({"-n", "--scrub"}, kExitUncorrected);
  EXPECT_EQ(hash_file(image()), before) << "fsck -n wrote to the image:\n" << ro.output;
  EXPECT_TRUE(has(ro, "replayed in memory only")) << ro.output;
  EXPECT_TRUE(has(ro, "CORRECTIONS NEEDED")) << ro.output;
  EXPECT_TRUE(has(ro, "0 checksum mismatches; 0 corrections, 0 errors"))
      << "the replayed filesystem checks clean:\n" << ro.output;
  // d exists only once the journal is replayed: -n checked the replayed
  // filesystem.
  EXPECT_TRUE(has(ro, "2 directories")) << ro.output;

  CommandResult fix = expect_fsck({"--scrub"}, kExitCorrected);
  EXPECT_NE(hash_file(image()), before) << "the replay reached the image";
  EXPECT_TRUE(has(fix, "journal: replayed")) << fix.output;
  EXPECT_TRUE(has(fix, "clean after corrections")) << fix.output;

  expect_fsck({"-n", "--scrub"}, kExitClean);
  const uint64_t replayed = hash_file(image());
  expect_fsck({"--scrub"}, kExitClean);
  EXPECT_EQ(hash_file(image()), replayed) << "nothing left to correct, nothing written";

  ASSERT_NO_FATAL_FAILURE(mount());
  EXPECT_TRUE(same_bytes(slurp(path("d/f")), data));
}

TEST_F(Fsck, AnInvalidSuperblockCopyIsLeftByReadOnlyAndRewrittenByAPlainRun) {
  ASSERT_NO_FATAL_FAILURE(mount());
  ASSERT_EQ(write_file(path("f"), "x"), 0);
  ASSERT_NO_FATAL_FAILURE(unmount_only());
  const uint64_t intact = hash_file(image());
  // Byte 4000 is covered by the checksum and by no field.
  ASSERT_TRUE(flip_byte(image(), kSuperblockB * kBlockSize + 4000));
  const uint64_t damaged = hash_file(image());

  CommandResult ro = expect_fsck({"-n"}, kExitUncorrected);
  EXPECT_EQ(hash_file(image()), damaged) << ro.output;
  EXPECT_TRUE(has(ro, "backup superblock is invalid")) << ro.output;

  CommandResult fix = expect_fsck({}, kExitCorrected);
  EXPECT_TRUE(has(fix, "backup superblock was invalid")) << fix.output;
  EXPECT_EQ(hash_file(image()), intact) << "the copy was rewritten from the primary";
  expect_fsck({"-n"}, kExitClean);
}

// The repair flags through the CLI and e2fsck's exit codes: -n finds a
// wrong block count (4) and writes nothing, -p repairs it (1), -n is then
// clean (0) and the file mounts and reads back. An entry naming a free
// inode has no fix -p may make: -p exits 4 and says to run fsck by hand,
// -y drops it (1). -n with a repair flag is a usage error.
TEST_F(Fsck, RepairFlagsRepairWhatTheyMayAndExitAsE2fsck) {
  ASSERT_NO_FATAL_FAILURE(mount());
  const std::string data(2 * kBlockSize, 'f');
  ASSERT_EQ(write_file(path("f"), data), 0);
  ASSERT_EQ(write_file(path("gone"), "g"), 0);
  const uint64_t ino = stat_of(path("f")).st_ino;
  const uint64_t gone = stat_of(path("gone")).st_ino;
  ASSERT_NO_FATAL_FAILURE(unmount_only());
  ASSERT_NO_FATAL_FAILURE(edit_inode(ino, [](DiskInode& d) { d.blocks += 5; }));
  const uint64_t before = hash_file(image());
  expect_fsck({"-n", "-y"}, kExitUsage);
  CommandResult ro = expect_fsck({"-n"}, kExitUncorrected);
  EXPECT_EQ(hash_file(image()), before) << ro.output;
  CommandResult p = expect_fsck({"-p"}, kExitCorrected);
  EXPECT_TRUE(has(p, "block count 7, but it holds 2 (2 mapped): repaired")) << p.output;
  expect_fsck({"-n"}, kExitClean);

  ASSERT_NO_FATAL_FAILURE(edit_inode(gone, [](DiskInode& d) { d = DiskInode{}; }));
  const uint64_t damaged = hash_file(image());
  expect_fsck({"-n"}, kExitUncorrected);
  EXPECT_EQ(hash_file(image()), damaged);
  // -p frees the leaked block but must leave the entry: errors remain.
  CommandResult preen = expect_fsck({"-a"}, kExitCorrected | kExitUncorrected);
  EXPECT_TRUE(has(preen, "UNEXPECTED INCONSISTENCY")) << preen.output;
  CommandResult y = expect_fsck({"-y"}, kExitCorrected);
  EXPECT_TRUE(has(y, "entry 'gone' points to free inode")) << y.output;
  expect_fsck({"-n"}, kExitClean);

  ASSERT_NO_FATAL_FAILURE(mount());
  EXPECT_TRUE(same_bytes(slurp(path("f")), data));
  struct stat st;
  EXPECT_EQ(stat(path("gone").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(stat_of(path("f")).st_blocks, 16);
}

TEST_F(Fsck, ABlockCountThatDisagreesWithTheMappedBlocksIsAnError) {
  ASSERT_NO_FATAL_FAILURE(mount());
  ASSERT_EQ(write_file(path("f"), std::string(3 * kBlockSize, 'f')), 0);
  ASSERT_EQ(setxattr(path("f").c_str(), "user.k", "v", 1, 0), 0);
  // Sparse: one block mapped at 1 MiB, 2 MiB in size.
  {
    UniqueFd s = open_fd(path("sparse"), O_RDWR | O_CREAT);
    ASSERT_EQ(pwrite(s.get(), "s", 1, 1 << 20), 1);
    ASSERT_EQ(ftruncate(s.get(), 2 << 20), 0);
  }
  const uint64_t ino = stat_of(path("f")).st_ino;
  ASSERT_NO_FATAL_FAILURE(unmount_only());
  expect_fsck({"-n"}, kExitClean);

  ASSERT_NO_FATAL_FAILURE(edit_inode(ino, [](DiskInode& d) { d.blocks = 3; }));
  CommandResult r = expect_fsck({"-n"}, kExitUncorrected);
  EXPECT_TRUE(has(r, "inode " + std::to_string(ino) +
                         ": block count 3, but it holds 4 (3 mapped + 1 xattr block)"))
      << r.output;
}

TEST_F(Fsck, XattrRecordsThatRunPastTheBlockAreAnError) {
  ASSERT_NO_FATAL_FAILURE(mount());
  ASSERT_EQ(write_file(path("f"), "data"), 0);
  ASSERT_EQ(setxattr(path("f").c_str(), "user.one", "1", 1, 0), 0);
  ASSERT_EQ(setxattr(path("f").c_str(), "user.two", "22", 2, 0), 0);
  const uint64_t ino = stat_of(path("f")).st_ino;
  ASSERT_NO_FATAL_FAILURE(unmount_only());
  expect_fsck({"-n"}, kExitClean);

  std::string why;
  auto sb = load_superblock(image(), &why);
  ASSERT_TRUE(sb.has_value()) << why;
  auto blocks = find_meta_blocks(image(), sb->data_start, kMagicXattr, ino);
  ASSERT_EQ(blocks.size(), 1u);
  std::vector<uint8_t> blk = read_block(image(), blocks[0]);
  // The second record's value length, past the end of the payload; the
  // block's own checksum is resealed, so only the record check can see it.
  const size_t second = kMetaHeaderSize + kXattrHeader + 3 + 8 + 1;
  put_le16(blk.data() + second + 1, 0xffff);
  seal_meta_block(blk.data(), blocks[0], decode_meta_header(blk.data()).txid);
  ASSERT_TRUE(write_block(image(), blocks[0], blk));
  CommandResult r = expect_fsck({"-n"}, kExitUncorrected);
  EXPECT_TRUE(has(r, "record 1 of 2 runs past the end of the block")) << r.output;
}

// A file unlinked while open, then a crash: an orphan, which the next
// read-write mount frees; a note, not an error. The same inode in a
// filesystem marked cleanly unmounted would never be freed: an error.
TEST_F(Fsck, OrphansAreANoteAfterACrashAndAnErrorAfterACleanUnmount) {
  uint64_t ino = 0;
  UniqueFd f;  // open until the daemon is dead: the kernel never forgets f
  ASSERT_NO_FATAL_FAILURE(run_then_kill_daemon([&] {
    f = open_fd(path("f"), O_RDWR | O_CREAT);
    ASSERT_TRUE(f.ok());
    ASSERT_EQ(write(f.get(), "orphan", 6), 6);
    ASSERT_EQ(fsync(f.get()), 0);
    ino = stat_of(path("f")).st_ino;
    ASSERT_EQ(unlink(path("f").c_str()), 0);
    UniqueFd root = open_fd(mnt(), O_RDONLY | O_DIRECTORY);
    ASSERT_EQ(fsync(root.get()), 0);  // the unlink is committed; f stays open
  }));
  f.reset();
  CommandResult fix = expect_fsck({}, kExitCorrected);
  EXPECT_TRUE(has(fix, "1 orphaned inodes")) << fix.output;
  EXPECT_TRUE(has(fix, "0 errors")) << fix.output;

  ASSERT_NO_FATAL_FAILURE(edit_superblocks([](Superblock& sb) { sb.state = kStateClean; }));
  CommandResult r = expect_fsck({"-n"}, kExitUncorrected);
  EXPECT_TRUE(has(r, "inode " + std::to_string(ino) + ": link count 0 and in no directory"))
      << r.output;
}

}  // namespace
}  // namespace stablefs::integ
