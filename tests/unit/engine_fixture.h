// Test fixture: a stablefs made on an in-memory device, mounted through
// the engine API directly (no FUSE), with power-cut simulation.
#pragma once

#include <sys/stat.h>

#include <cstring>
#include <shared_mutex>

#include <gtest/gtest.h>

#include "core/io/mem_device.h"
#include "core/mkfs.h"
#include "core/mounted_fs.h"

namespace stablefs {

// A MemDevice that outlives every mount of it (mount takes ownership of a
// forwarding wrapper, not of the device). cut() simulates the power going
// out for that mount: from then on its I/O fails and reaches nothing.
class SharedDevice : public BlockDevice {
 public:
  // The geometry is copied: a crashed mount's threads outlive the test
  // (and its MemDevice) and may still ask, but never reach d_ after cut().
  explicit SharedDevice(MemDevice& d)
      : d_(d), blocks_(d.block_count()), sector_(d.sector_size()) {}
  uint64_t block_count() const override { return blocks_; }
  uint32_t sector_size() const override { return sector_; }
  Status submit_and_wait(std::span<IoRequest*> r) override {
    std::shared_lock lk(mu_);
    if (dead_) return err(EIO);
    return d_.submit_and_wait(r);
  }
  void cut() {
    std::unique_lock lk(mu_);
    dead_ = true;
  }

 private:
  MemDevice& d_;
  const uint64_t blocks_;
  const uint32_t sector_;
  std::shared_mutex mu_;  // in-flight I/O holds it shared; cut() exclusive
  bool dead_ = false;
};

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
  uint64_t create(const char* name, uint64_t parent = kRootIno) {
    auto a = fs_->mknod(parent, name, S_IFREG | 0644, 0, {});
    EXPECT_TRUE(a.ok()) << a.error();
    return a->ino;
  }

  MemDevice dev_{8192};
  SharedDevice* live_ = nullptr;
  std::unique_ptr<Filesystem> fs_;
};


// Counts device blocks whose durable contents equal `page`.
inline int count_blocks_with(MemDevice& dev, const std::string& page) {
  int n = 0;
  for (uint64_t blk = 0; blk < dev.block_count(); blk++)
    if (std::memcmp(dev.durable_block(blk).data(), page.data(), page.size()) == 0) n++;
  return n;
}

}  // namespace stablefs
