// The engine (core/mounted_fs) driven directly, without FUSE, on an
// in-memory device: persistence, crash recovery and the stable-page
// protocol of the write path.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <shared_mutex>
#include <thread>

#include <gtest/gtest.h>

#include "core/base/checksum.h"
#include "tests/unit/engine_fixture.h"

namespace stablefs {
namespace {

TEST_F(EngineTest, WrittenDataSurvivesRemount) {
  mount();
  uint64_t ino = create("f");
  std::string data(10000, 'x');
  data[5000] = 'y';
  ASSERT_EQ(*fs_->write(ino, 100, data.data(), data.size()), data.size());
  unmount();
  mount();
  auto a = fs_->lookup(kRootIno, "f");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->size, 10100u);
  std::string back(10100, '\0');
  ASSERT_EQ(*fs_->read(a->ino, 0, back.size(), back.data()), back.size());
  EXPECT_EQ(back.substr(0, 100), std::string(100, '\0'));
  EXPECT_EQ(back.substr(100), data);
}

TEST_F(EngineTest, FsyncedDataSurvivesCrash) {
  mount();
  uint64_t ino = create("durable");
  std::string data(8192, 'd');
  ASSERT_TRUE(fs_->write(ino, 0, data.data(), data.size()).ok());
  ASSERT_TRUE(fs_->fsync(ino, false).ok());
  create("not-synced");
  crash();
  mount();
  auto a = fs_->lookup(kRootIno, "durable");
  ASSERT_TRUE(a.ok());
  std::string back(8192, '\0');
  ASSERT_EQ(*fs_->read(a->ino, 0, back.size(), back.data()), 8192u);
  EXPECT_EQ(back, data);
}

TEST_F(EngineTest, RewriteGoesToANewBlock) {
  mount();
  uint64_t ino = create("f");
  std::string a(4096, 'a'), b(4096, 'b');
  ASSERT_TRUE(fs_->write(ino, 0, a.data(), a.size()).ok());
  ASSERT_TRUE(fs_->fsync(ino, false).ok());
  ASSERT_TRUE(fs_->write(ino, 0, b.data(), b.size()).ok());
  ASSERT_TRUE(fs_->fsync(ino, false).ok());
  // The committed block with 'a' is never overwritten in place: scan the
  // device for both patterns.
  int seen_a = 0, seen_b = 0;
  for (uint64_t blk = 0; blk < dev_.block_count(); blk++) {
    auto d = dev_.durable_block(blk);
    if (std::memcmp(d.data(), a.data(), 4096) == 0) seen_a++;
    if (std::memcmp(d.data(), b.data(), 4096) == 0) seen_b++;
  }
  EXPECT_EQ(seen_a, 1);
  EXPECT_EQ(seen_b, 1);
}

TEST_F(EngineTest, NamespaceOperations) {
  mount();
  auto d = fs_->mkdir(kRootIno, "dir", 0755, {});
  ASSERT_TRUE(d.ok());
  uint64_t f = create("file", d->ino);
  EXPECT_EQ(fs_->mkdir(kRootIno, "dir", 0755, {}).error(), EEXIST);
  EXPECT_EQ(fs_->rmdir(kRootIno, "dir").error(), ENOTEMPTY);
  ASSERT_TRUE(fs_->link(f, kRootIno, "hard").ok());
  EXPECT_EQ(fs_->getattr(f)->nlink, 2u);
  ASSERT_TRUE(fs_->rename(kRootIno, "hard", kRootIno, "hard2", 0).ok());
  EXPECT_EQ(fs_->lookup(kRootIno, "hard").error(), ENOENT);
  EXPECT_EQ(fs_->rename(kRootIno, "dir", d->ino, "sub", 0).error(), EINVAL);
  ASSERT_TRUE(fs_->symlink(kRootIno, "ln", "target/path", {}).ok());
  auto l = fs_->lookup(kRootIno, "ln");
  EXPECT_EQ(*fs_->readlink(l->ino), "target/path");
  std::string longname(256, 'n');
  EXPECT_EQ(fs_->mknod(kRootIno, longname, S_IFREG | 0644, 0, {}).error(), ENAMETOOLONG);
  ASSERT_TRUE(fs_->unlink(d->ino, "file").ok());
  ASSERT_TRUE(fs_->rmdir(kRootIno, "dir").ok());
  unmount();
  mount();
  EXPECT_EQ(fs_->lookup(kRootIno, "dir").error(), ENOENT);
  EXPECT_TRUE(fs_->lookup(kRootIno, "hard2").ok());
  EXPECT_EQ(fs_->getattr(kRootIno)->nlink, 2u);
}

}  // namespace
}  // namespace stablefs
