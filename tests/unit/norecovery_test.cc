// mount -o ro,norecovery (ext4's, also spelled noload): a read-only mount
// that leaves the journal as it is. It shows the home locations as the
// last checkpoint left them; the journal is still there for the next
// mount to replay. A read-write mount cannot skip the replay.
#include <gtest/gtest.h>

#include <string>

#include "tests/unit/engine_fixture.h"

namespace stablefs {
namespace {

class NorecoveryTest : public EngineTest {
 protected:
  static MountOptions read_only(bool norecovery) {
    MountOptions o;
    o.read_only = true;
    o.norecovery = norecovery;
    return o;
  }
  // A file committed to the journal only (fsync, then a power cut before
  // any checkpoint wrote its blocks home).
  void commit_file_then_crash() {
    mount();
    uint64_t f = create("logged");
    ASSERT_EQ(*fs_->write(f, 0, "in the log", 10), 10u);
    ASSERT_TRUE(fs_->fsync(f, false).ok());
    crash();
  }
};

TEST_F(NorecoveryTest, ReadOnlyMountShowsWhatTheLastCheckpointLeft) {
  ASSERT_NO_FATAL_FAILURE(commit_file_then_crash());
  mount(read_only(true));
  EXPECT_EQ(fs_->lookup(kRootIno, "logged").error(), ENOENT)
      << "norecovery showed what only the journal holds";
  EXPECT_EQ(fs_->mknod(kRootIno, "x", S_IFREG | 0644, 0, {}).error(), EROFS);
  EXPECT_EQ(fs_->trim(0, dev_.block_count() * kBlockSize, 0).error(), EROFS);
  unmount();
  // The journal was left for the next mount: replayed, the file is there.
  mount(read_only(false));
  EXPECT_EQ(read_back("logged"), "in the log");
  unmount();
  mount();
  EXPECT_EQ(read_back("logged"), "in the log");
}

TEST_F(NorecoveryTest, ReadWriteMountRefusesIt) {
  MountOptions o;
  o.norecovery = true;
  auto r = Filesystem::mount(std::make_unique<SharedDevice>(dev_), o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), EINVAL);
}

}  // namespace
}  // namespace stablefs
