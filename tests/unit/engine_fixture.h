// Test fixture: a stablefs made on an in-memory device, mounted through
// the engine API directly (no FUSE), with power-cut simulation.
#pragma once

#include <sys/stat.h>

#include <cstring>

#include <gtest/gtest.h>

#include "core/fsck.h"
#include "core/io/fault_device.h"
#include "core/io/mem_device.h"
#include "core/mkfs.h"
#include "core/mounted_fs.h"

namespace stablefs {

class EngineTest : public ::testing::Test {
 protected:
  // Every rewrite goes to a new block (nothing is journaled): for tests of
  // the data write path itself.
  static MountOptions redirect_only() {
    MountOptions o;
    o.journal_data_pages = 0;
    return o;
  }
  // Short runs of rewritten pages go through the journal (the default,
  // spelled out for the tests that are about it).
  static MountOptions journaled_rewrites() {
    MountOptions o;
    o.journal_data_pages = MountOptions::kJournalDataPages;
    return o;
  }
  void SetUp() override { ASSERT_TRUE(make_filesystem(dev_, {}).ok()); }
  void TearDown() override {
    if (fs_) (void)fs_->unmount();
  }
  MountedFs& mount(MountOptions o = {}) {
    o.cache_bytes = 16 << 20;
    auto d = std::make_unique<SharedDevice>(dev_);
    live_ = d.get();
    auto r = Filesystem::mount(std::move(d), o);
    EXPECT_TRUE(r.ok()) << r.error();
    fs_ = std::move(*r);
    return static_cast<MountedFs&>(*fs_);
  }
  void unmount() {
    ASSERT_TRUE(fs_->unmount().ok());
    fs_.reset();
  }
  // Power cut: the mount is abandoned without unmount, unflushed writes lost.
  void crash() {
    live_->cut();
    dev_.crash();
    // The abandoned mount's threads must not outlive the test (they would
    // race the next test, and static destructors at exit): stop them.
    // Every write it attempts now fails at the cut device, so the image
    // stays exactly what the crash left.
    (void)fs_->unmount();
    fs_.reset();
  }
  // The whole content of parent/name, or a "<...>" description of why not.
  std::string read_back(std::string_view name, uint64_t parent = kRootIno) {
    auto a = fs_->lookup(parent, name);
    if (!a.ok()) return "<lookup errno " + std::to_string(a.error()) + ">";
    std::string back(a->size, '\0');
    auto r = fs_->read(a->ino, 0, back.size(), back.data());
    if (!r.ok()) return "<read errno " + std::to_string(r.error()) + ">";
    back.resize(*r);
    return back;
  }
  // A setgid directory (mode 02775) of group `gid` in the root.
  uint64_t setgid_dir(const char* name, uint32_t gid) {
    auto d = fs_->mkdir(kRootIno, name, 02775, {});
    EXPECT_TRUE(d.ok()) << d.error();
    SetAttr sa;
    sa.gid = gid;
    EXPECT_TRUE(fs_->setattr(d->ino, sa).ok());
    return d->ino;
  }
  uint64_t create(const char* name, uint64_t parent = kRootIno) {
    auto a = fs_->mknod(parent, name, S_IFREG | 0644, 0, {});
    EXPECT_TRUE(a.ok()) << a.error();
    return a->ino;
  }

  MemDevice dev_{8192};
  SharedDevice* live_ = nullptr;
  std::unique_ptr<Filesystem> fs_;
};

// Mounts through a FaultDevice, so a test can fail chosen blocks.
class EngineFaultTest : public EngineTest {
 protected:
  // meta_cache_bytes: the metadata cache; one block makes every block
  // nobody holds leave it as soon as another one is read.
  FaultDevice& mount_with_faults(uint64_t meta_cache_bytes = MountOptions{}.meta_cache_bytes) {
    MountOptions o;
    o.meta_cache_bytes = meta_cache_bytes;
    return mount_with_faults(o);
  }
  FaultDevice& mount_with_faults(MountOptions o) {
    auto shared = std::make_unique<SharedDevice>(dev_);
    live_ = shared.get();  // crash() cuts it
    auto fd = std::make_unique<FaultDevice>(std::move(shared));
    FaultDevice& faults = *fd;
    o.cache_bytes = 16 << 20;
    auto r = Filesystem::mount(std::move(fd), o);
    EXPECT_TRUE(r.ok());
    fs_ = std::move(*r);
    return faults;
  }
  // fsck of the unmounted device finds nothing wrong.
  void expect_fsck_clean() {
    FsckOptions fo;
    std::string problems;
    fo.report = [&](const std::string& l) { problems += l + "\n"; };
    auto fsck = check_filesystem(dev_, fo);
    ASSERT_TRUE(fsck.ok());
    EXPECT_EQ(fsck->errors, 0u) << problems;
  }
};

// Rewrites inode `ino`'s record on the unmounted device through `edit`,
// resealing its inode-table block: corruption that checksums cannot catch.
inline void edit_inode(MemDevice& dev, uint64_t ino, const std::function<void(DiskInode&)>& edit) {
  std::vector<uint8_t> sb0 = dev.durable_block(kSuperblockA);
  auto sb = decode_superblock(sb0.data(), kSuperblockA, dev.block_count(), nullptr);
  ASSERT_TRUE(sb.ok());
  uint64_t nr = inode_block(*sb, ino);
  std::vector<uint8_t> blk = dev.durable_block(nr);
  uint8_t* rec = blk.data() + kMetaHeaderSize + inode_slot(ino) * kInodeSize;
  DiskInode d = decode_inode(rec);
  edit(d);
  encode_inode(rec, d);
  seal_meta_block(blk.data(), nr, decode_meta_header(blk.data()).txid);
  for (size_t i = 0; i < kBlockSize; i++) dev.poke(nr, i, blk[i]);
}

// Counts device blocks whose durable contents equal `page`.
inline int count_blocks_with(MemDevice& dev, const std::string& page) {
  int n = 0;
  for (uint64_t blk = 0; blk < dev.block_count(); blk++)
    if (std::memcmp(dev.durable_block(blk).data(), page.data(), page.size()) == 0) n++;
  return n;
}

}  // namespace stablefs
