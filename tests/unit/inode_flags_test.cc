// chattr flags (core/inode_flags.h, core/flags_fs.cc): the FS_*_FL and
// FS_XFLAG_* words map onto the inode's bits, the engine refuses what
// immutable and append-only forbid and allows what they allow, noatime
// keeps atime, the flags are stored, and fsck knows every flag bit.
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "core/fsck.h"
#include "core/inode_flags.h"
#include "tests/unit/engine_fixture.h"

namespace stablefs {
namespace {

TEST(InodeFlagWords, MapBothWaysAndRefuseUnknownFlags) {
  auto d = disk_flags_from_fs(FS_IMMUTABLE_FL | FS_NOATIME_FL);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, uint32_t(kInodeImmutable | kInodeNoatime));
  EXPECT_EQ(fs_flags_of(*d | kInodeInlineData), uint32_t(FS_IMMUTABLE_FL | FS_NOATIME_FL))
      << "inline data is not a user flag";
  EXPECT_EQ(xflags_of(kInodeAppend | kInodeNodump), uint32_t(FS_XFLAG_APPEND | FS_XFLAG_NODUMP));
  auto x = disk_flags_from_xflags(FS_XFLAG_APPEND);
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(*x, uint32_t(kInodeAppend));
  EXPECT_EQ(disk_flags_from_fs(FS_COMPR_FL).error(), EOPNOTSUPP);
  EXPECT_EQ(disk_flags_from_xflags(FS_XFLAG_DAX).error(), EOPNOTSUPP);
}

class InodeFlags : public EngineTest {
 protected:
  uint64_t file_with(const char* name, uint32_t fs_flags, uint64_t parent = kRootIno) {
    uint64_t f = create(name, parent);
    EXPECT_TRUE(fs_->write(f, 0, "0123456789", 10).ok());
    EXPECT_TRUE(fs_->set_inode_flags(f, fs_flags).ok());
    return f;
  }
  Status truncate(uint64_t ino, uint64_t size) {
    SetAttr sa;
    sa.size = size;
    auto r = fs_->setattr(ino, sa);
    return r.ok() ? Status::Ok() : Status(err(r.error()));
  }
  Status chmod(uint64_t ino, uint32_t mode) {
    SetAttr sa;
    sa.mode = mode;
    auto r = fs_->setattr(ino, sa);
    return r.ok() ? Status::Ok() : Status(err(r.error()));
  }
};

TEST_F(InodeFlags, ImmutableRefusesEveryChangeAndAllowsReading) {
  mount();
  uint64_t f = file_with("f", FS_IMMUTABLE_FL);
  EXPECT_EQ(fs_->write(f, 10, "x", 1).error(), EPERM);
  EXPECT_EQ(fs_->write(f, 0, "x", 1).error(), EPERM);
  EXPECT_EQ(truncate(f, 0).error(), EPERM);
  EXPECT_EQ(chmod(f, 0600).error(), EPERM);
  EXPECT_EQ(fs_->setxattr(f, "user.a", "1", 0).error(), EPERM);
  EXPECT_EQ(fs_->open(f, O_WRONLY).error(), EPERM);
  EXPECT_EQ(fs_->open(f, O_WRONLY | O_APPEND).error(), EPERM);
  EXPECT_EQ(fs_->fallocate(f, FALLOC_FL_KEEP_SIZE, 0, 4096).error(), EPERM);
  EXPECT_EQ(fs_->unlink(kRootIno, "f").error(), EPERM);
  EXPECT_EQ(fs_->rename(kRootIno, "f", kRootIno, "g", 0, Creds{}).error(), EPERM);
  EXPECT_EQ(fs_->link(f, kRootIno, "h").error(), EPERM);
  create("victim");
  EXPECT_EQ(fs_->rename(kRootIno, "victim", kRootIno, "f", 0, Creds{}).error(), EPERM)
      << "nor may it be replaced";
  EXPECT_TRUE(fs_->open(f, O_RDONLY).ok());
  EXPECT_EQ(read_back("f"), "0123456789");
  // Cleared, everything is allowed again.
  ASSERT_TRUE(fs_->set_inode_flags(f, 0).ok());
  EXPECT_TRUE(truncate(f, 0).ok());
  EXPECT_TRUE(fs_->unlink(kRootIno, "f").ok());
}

TEST_F(InodeFlags, AppendOnlyAllowsOnlyAppending) {
  mount();
  uint64_t f = file_with("f", FS_APPEND_FL);
  EXPECT_TRUE(fs_->write(f, 10, "ab", 2).ok()) << "at EOF";
  EXPECT_EQ(fs_->write(f, 0, "x", 1).error(), EPERM) << "below EOF";
  EXPECT_EQ(fs_->open(f, O_WRONLY).error(), EPERM);
  EXPECT_TRUE(fs_->open(f, O_WRONLY | O_APPEND).ok());
  EXPECT_EQ(truncate(f, 0).error(), EPERM);
  EXPECT_EQ(chmod(f, 0600).error(), EPERM);
  EXPECT_TRUE(fs_->fallocate(f, FALLOC_FL_KEEP_SIZE, 0, 8192).ok());
  EXPECT_EQ(fs_->fallocate(f, 0, 0, 8192).error(), EPERM);
  EXPECT_EQ(fs_->unlink(kRootIno, "f").error(), EPERM);
  EXPECT_EQ(fs_->rename(kRootIno, "f", kRootIno, "g", 0, Creds{}).error(), EPERM);
  EXPECT_EQ(fs_->link(f, kRootIno, "h").error(), EPERM);
  EXPECT_EQ(read_back("f"), "0123456789ab");
  SetAttr touch;
  touch.atime = touch.mtime = Timespec{1000, 0};
  EXPECT_TRUE(fs_->setattr(f, touch).ok()) << "times set to now are allowed (utime(NULL), touch)";
  touch.explicit_times = true;
  EXPECT_EQ(fs_->setattr(f, touch).error(), EPERM) << "explicit times are not";
}

TEST_F(InodeFlags, DirectoriesGuardTheirNames) {
  mount();
  auto imm = fs_->mkdir(kRootIno, "imm", 0755, {});
  auto app = fs_->mkdir(kRootIno, "app", 0755, {});
  ASSERT_TRUE(imm.ok() && app.ok());
  create("old", imm->ino);
  create("old", app->ino);
  uint64_t outside = create("outside");
  ASSERT_TRUE(fs_->set_inode_flags(imm->ino, FS_IMMUTABLE_FL).ok());
  ASSERT_TRUE(fs_->set_inode_flags(app->ino, FS_APPEND_FL).ok());
  EXPECT_EQ(fs_->mknod(imm->ino, "new", S_IFREG | 0644, 0, {}).error(), EPERM);
  EXPECT_EQ(fs_->unlink(imm->ino, "old").error(), EPERM);
  EXPECT_EQ(fs_->link(outside, imm->ino, "l").error(), EPERM);
  EXPECT_EQ(fs_->rename(kRootIno, "outside", imm->ino, "moved", 0, Creds{}).error(), EPERM);
  EXPECT_TRUE(fs_->mknod(app->ino, "new", S_IFREG | 0644, 0, {}).ok()) << "append: adding is fine";
  EXPECT_EQ(fs_->unlink(app->ino, "old").error(), EPERM) << "removing is not";
  EXPECT_EQ(fs_->rename(app->ino, "old", kRootIno, "x", 0, Creds{}).error(), EPERM);
}

TEST_F(InodeFlags, NoatimeKeepsAtimeAndFlagsSurviveRemount) {
  MountOptions strict;
  strict.atime = AtimeMode::kStrict;
  mount(strict);
  uint64_t f = file_with("f", FS_NOATIME_FL | FS_NODUMP_FL);
  Timespec before = fs_->getattr(f)->atime;
  char buf[4];
  ASSERT_TRUE(fs_->read(f, 0, 4, buf).ok());
  EXPECT_EQ(fs_->getattr(f)->atime.sec, before.sec);
  EXPECT_EQ(fs_->getattr(f)->atime.nsec, before.nsec);
  uint64_t g = file_with("g", FS_IMMUTABLE_FL | FS_APPEND_FL);
  unmount();
  mount(strict);
  EXPECT_EQ(*fs_->get_inode_flags(f), uint32_t(FS_NOATIME_FL | FS_NODUMP_FL));
  EXPECT_EQ(*fs_->get_inode_flags(g), uint32_t(FS_IMMUTABLE_FL | FS_APPEND_FL));
  EXPECT_EQ(fs_->write(g, 10, "x", 1).error(), EPERM);
  EXPECT_EQ(fs_->set_inode_flags(f, FS_COMPR_FL).error(), EOPNOTSUPP);
}

// chattr +S: a write or a truncate is durable when the call returns, with
// no fsync; a file without the flag loses the same write to a power cut.
TEST_F(InodeFlags, SyncMakesWritesAndTruncatesDurableWithoutFsync) {
  mount();
  uint64_t synced = file_with("synced", FS_SYNC_FL);
  uint64_t plain = create("plain");
  ASSERT_TRUE(fs_->fsync(synced, false).ok());  // the flag itself, and both names
  ASSERT_EQ(*fs_->write(synced, 10, "abc", 3), 3u);
  ASSERT_EQ(*fs_->write(plain, 0, "abc", 3), 3u);
  uint64_t truncated = file_with("truncated", FS_SYNC_FL);
  ASSERT_TRUE(fs_->fsync(truncated, false).ok());
  SetAttr sa;
  sa.size = 4;
  ASSERT_TRUE(fs_->setattr(truncated, sa).ok());
  crash();
  mount();
  EXPECT_EQ(read_back("synced"), "0123456789abc");
  EXPECT_EQ(read_back("truncated"), "0123");
  EXPECT_EQ(read_back("plain"), "") << "the power cut kept an unsynced write: the test shows nothing";
  EXPECT_EQ(*fs_->get_inode_flags(synced), uint32_t(FS_SYNC_FL));
}

TEST_F(InodeFlags, FsckChecksTheFlagBits) {
  mount();
  uint64_t f =
      file_with("f", FS_IMMUTABLE_FL | FS_APPEND_FL | FS_NODUMP_FL | FS_NOATIME_FL | FS_SYNC_FL);
  unmount();
  FsckOptions fo;
  std::string lines;
  fo.report = [&](const std::string& l) { lines += l + "\n"; };
  auto clean = check_filesystem(dev_, fo);
  ASSERT_TRUE(clean.ok());
  EXPECT_EQ(clean->errors, 0u) << lines;
  // Bit 6 is not defined: poke it into f's record and reseal the block.
  auto sb = decode_superblock(dev_.durable_block(0).data(), 0, 0, nullptr);
  ASSERT_TRUE(sb.ok());
  uint64_t blk = inode_block(*sb, f);
  auto b = dev_.durable_block(blk);
  size_t at = kMetaHeaderSize + inode_slot(f) * kInodeSize + 76;
  b[at] |= 1u << 6;
  seal_meta_block(b.data(), blk, decode_meta_header(b.data()).txid);
  auto old = dev_.durable_block(blk);
  for (size_t i = 0; i < b.size(); i++)
    if (b[i] != old[i]) dev_.poke(blk, i, b[i]);
  auto bad = check_filesystem(dev_, fo);
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->errors, 1u) << lines;
  EXPECT_NE(lines.find("unknown inode flag bits 0x40"), std::string::npos) << lines;
}

}  // namespace
}  // namespace stablefs
