// fsck's repairs (core/fsck_repair.h) on an in-memory device: each test
// makes one kind of inconsistency by editing the unmounted image (resealing
// the metadata block, so only fsck's cross-checks can see it), then:
// a read-only check finds it and writes nothing; a repair at the level
// that may fix it fixes it; a second read-only check is clean; the
// filesystem mounts and reads back what it should.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <functional>

#include "core/base/endian.h"
#include "core/fsck.h"
#include "core/xattr_format.h"
#include "tests/unit/engine_fixture.h"

namespace stablefs {
namespace {

// Passes the first `budget` writes and flushes to the device, then the
// power goes: every later request fails and reaches nothing.
class PowerCutDevice : public BlockDevice {
 public:
  PowerCutDevice(BlockDevice& d, int budget) : d_(d), budget_(budget) {}
  uint64_t block_count() const override { return d_.block_count(); }
  uint32_t sector_size() const override { return d_.sector_size(); }
  Status submit_and_wait(std::span<IoRequest*> requests) override {
    for (IoRequest* r : requests) {
      if (r->op != IoOp::kRead && budget_-- <= 0) cut_ = true;
      if (cut_) return err(EIO);
      SFS_TRY(d_.submit_and_wait(std::span<IoRequest*>(&r, 1)));
    }
    return Status::Ok();
  }
  bool cut() const { return cut_; }

 private:
  BlockDevice& d_;
  int budget_;
  bool cut_ = false;
};

class FsckRepairTest : public EngineTest {
 protected:
  FsckResult fsck(FsckRepair repair, bool read_only, std::string* lines) {
    FsckOptions fo;
    fo.scrub = true;
    fo.read_only = read_only;
    fo.repair = repair;
    lines->clear();
    fo.report = [&](const std::string& l) { *lines += l + "\n"; };
    auto r = check_filesystem(dev_, fo);
    EXPECT_TRUE(r.ok()) << r.error();
    return r.ok() ? *r : FsckResult{};
  }

  // -n finds errors and writes nothing; `repair` fixes every one (and
  // reports each with ": repaired"); -n is clean afterwards. Returns the
  // lines of the first check.
  std::string expect_found_and_repaired(FsckRepair repair) {
    std::string lines;
    const uint64_t writes = dev_.write_count(), flushes = dev_.flush_count();
    FsckResult ro = fsck(FsckRepair::kNone, true, &lines);
    EXPECT_GT(ro.errors, 0u) << lines;
    EXPECT_EQ(dev_.write_count(), writes) << "-n wrote";
    EXPECT_EQ(dev_.flush_count(), flushes) << "-n flushed";
    const std::string found = lines;

    FsckResult fix = fsck(repair, false, &lines);
    EXPECT_EQ(fix.errors, 0u) << lines;
    EXPECT_EQ(fix.checksum_mismatches, 0u) << lines;
    EXPECT_GT(fix.repairs, 0u) << lines;
    EXPECT_EQ(fix.corrections, fix.repairs) << lines;
    EXPECT_NE(lines.find(": repaired"), std::string::npos) << lines;

    FsckResult again = fsck(FsckRepair::kNone, true, &lines);
    EXPECT_EQ(again.errors + again.checksum_mismatches + again.corrections_skipped, 0u)
        << "not clean after the repair:\n"
        << lines;
    return found;
  }

  Superblock superblock() {
    std::vector<uint8_t> b = dev_.durable_block(kSuperblockA);
    std::string why;
    auto sb = decode_superblock(b.data(), kSuperblockA, dev_.block_count(), &why);
    EXPECT_TRUE(sb.ok()) << why;
    return *sb;
  }
  // Rewrites block nr through edit(bytes); a metadata block is resealed
  // with its own txid.
  void edit_block(uint64_t nr, const std::function<void(uint8_t*)>& edit, bool meta = true) {
    AlignedBlock b;
    ASSERT_TRUE(dev_.read(nr, b.data(), kBlockSize).ok());
    edit(b.data());
    if (meta) seal_meta_block(b.data(), nr, decode_meta_header(b.data()).txid);
    ASSERT_TRUE(dev_.write(nr, b.data(), kBlockSize).ok());
    ASSERT_TRUE(dev_.flush().ok());
  }
  void edit_inode(uint64_t ino, const std::function<void(DiskInode&)>& edit) {
    edit_block(inode_block(superblock(), ino), [&](uint8_t* b) {
      uint8_t* rec = b + kMetaHeaderSize + inode_slot(ino) * kInodeSize;
      DiskInode d = decode_inode(rec);
      edit(d);
      encode_inode(rec, d);
    });
  }
  DiskInode inode(uint64_t ino) {
    std::vector<uint8_t> b = dev_.durable_block(inode_block(superblock(), ino));
    return decode_inode(b.data() + kMetaHeaderSize + inode_slot(ino) * kInodeSize);
  }
  // The physical block of a small file's or directory's first extent
  // (depth 0: `u32 logical, u32 length, u64 physical` in the root).
  uint64_t first_block(uint64_t ino) {
    DiskInode d = inode(ino);
    EXPECT_EQ(d.map_depth, 0);
    EXPECT_GT(d.inline_count, 0);
    return get_le64(d.root.data() + 8);
  }
  void set_bit(uint64_t bitmap_start, uint64_t n, bool on) {
    edit_block(bitmap_start + n / kBitsPerBitmapBlock, [&](uint8_t* b) {
      uint64_t i = n % kBitsPerBitmapBlock;
      uint8_t& byte = b[kMetaHeaderSize + i / 8];
      byte = on ? byte | uint8_t(1u << (i % 8)) : byte & uint8_t(~(1u << (i % 8)));
    });
  }
  uint64_t checksum_entry(uint64_t blk) {
    Superblock sb = superblock();
    std::vector<uint8_t> b = dev_.durable_block(sb.csum_table_start + blk / kChecksumsPerBlock);
    return get_le64(b.data() + kMetaHeaderSize + (blk % kChecksumsPerBlock) * 8);
  }
  // Offset in the payload of the directory block `blk` of the record named `name`.
  size_t record_offset(uint64_t blk, const std::string& name) {
    std::vector<uint8_t> b = dev_.durable_block(blk);
    const uint8_t* p = b.data() + kMetaHeaderSize;
    for (size_t off = 0; off + kDirRecordHeader <= kMetaPayload;) {
      if (get_le64(p + off) == 0) break;
      uint8_t len = p[off + 9];
      if (std::string(reinterpret_cast<const char*>(p + off + 10), len) == name) return off;
      off += kDirRecordHeader + len;
    }
    ADD_FAILURE() << "no record '" << name << "' in block " << blk;
    return 0;
  }

  const std::string data_ = std::string(3 * 4096, 'd') + "tail";
  // A file with data_ in the root, fsync'd; the filesystem unmounted.
  uint64_t make_file(const char* name, uint64_t parent = kRootIno) {
    uint64_t ino = create(name, parent);
    EXPECT_TRUE(fs_->write(ino, 0, data_.data(), data_.size()).ok());
    EXPECT_TRUE(fs_->fsync(ino, false).ok());
    return ino;
  }
  // f0 .. f<n-1>, each made by make_file.
  std::vector<uint64_t> make_files(int n) {
    std::vector<uint64_t> inos;
    for (int i = 0; i < n; i++) inos.push_back(make_file(("f" + std::to_string(i)).c_str()));
    return inos;
  }
};

TEST_F(FsckRepairTest, BitmapsFollowWhatIsReachableAndALeakedBlockLosesItsChecksum) {
  mount();
  uint64_t f = make_file("f");
  unmount();
  const Superblock sb = superblock();
  const uint64_t used = first_block(f);
  const uint64_t leaked = sb.total_blocks - 1;
  set_bit(sb.block_bitmap_start, used, false);
  set_bit(sb.block_bitmap_start, leaked, true);
  edit_block(sb.csum_table_start + leaked / kChecksumsPerBlock, [&](uint8_t* b) {
    put_le64(b + kMetaHeaderSize + (leaked % kChecksumsPerBlock) * 8, 0x1234);
  });
  set_bit(sb.inode_bitmap_start, f, false);
  set_bit(sb.inode_bitmap_start, 77, true);

  std::string found = expect_found_and_repaired(FsckRepair::kPreen);
  EXPECT_NE(found.find("used blocks are free in the bitmap: " + std::to_string(used)),
            std::string::npos)
      << found;
  EXPECT_NE(found.find("1 blocks are marked in use but belong to no inode"), std::string::npos)
      << found;
  EXPECT_NE(found.find("inode " + std::to_string(f) + ": in use but free in the inode bitmap"),
            std::string::npos)
      << found;
  EXPECT_NE(found.find("inode 77: free but marked in use"), std::string::npos) << found;
  EXPECT_EQ(checksum_entry(leaked), 0u);

  mount();
  EXPECT_EQ(read_back("f"), data_);
  // The repaired bitmap is what the allocator uses: new data lands
  // elsewhere than on f's blocks.
  uint64_t g = make_file("g");
  (void)g;
  EXPECT_EQ(read_back("f"), data_);
  EXPECT_EQ(read_back("g"), data_);
}

// A bitmap block that fails its checksum is rebuilt whole from what is in
// use: afterwards the allocator hands out neither a used inode slot nor a
// used block.
TEST_F(FsckRepairTest, CorruptBitmapBlocksAreRebuiltFromWhatIsInUse) {
  mount();
  std::vector<uint64_t> inos = make_files(5);
  unmount();
  const Superblock sb = superblock();
  dev_.poke(sb.inode_bitmap_start, kMetaHeaderSize + 1000, 0x5a);
  dev_.poke(sb.block_bitmap_start, kMetaHeaderSize + 7, 0x00);

  std::string found = expect_found_and_repaired(FsckRepair::kPreen);
  EXPECT_NE(found.find("inode bitmap block " + std::to_string(sb.inode_bitmap_start) +
                       " is corrupt"),
            std::string::npos)
      << found;
  EXPECT_NE(found.find("block bitmap block " + std::to_string(sb.block_bitmap_start) +
                       " is corrupt"),
            std::string::npos)
      << found;

  mount();
  for (int i = 0; i < 5; i++) {
    std::string name = "g" + std::to_string(i);
    uint64_t g = make_file(name.c_str());
    EXPECT_EQ(std::count(inos.begin(), inos.end(), g), 0) << "a used inode slot was reused";
  }
  for (int i = 0; i < 5; i++) {
    EXPECT_EQ(read_back("f" + std::to_string(i)), data_);
    EXPECT_EQ(read_back("g" + std::to_string(i)), data_);
  }
}

// The repairs go through the journal: the power going out after any write
// or flush of a repair leaves an image that a second fsck -y repairs to a
// clean filesystem, with every file there and intact.
TEST_F(FsckRepairTest, ARepairCutOffAtAnyWriteIsFinishedByTheNextRun) {
  bool finished = false;
  int budget = 0;
  for (; !finished && budget < 400; budget++) {
    SCOPED_TRACE("power cut after " + std::to_string(budget) + " writes and flushes");
    dev_.crash();
    ASSERT_TRUE(make_filesystem(dev_, {}).ok());
    mount();
    std::vector<uint64_t> inos = make_files(3);
    unmount();
    // A block count, a link count, a bitmap block, an entry naming a
    // freed inode: fixes in every step of the repair order.
    const Superblock sb = superblock();
    edit_inode(inos[0], [](DiskInode& i) { i.blocks = 50; });
    edit_inode(inos[1], [](DiskInode& i) { i.nlink = 3; });
    edit_inode(inos[2], [](DiskInode& i) { i = DiskInode{}; });
    dev_.poke(sb.block_bitmap_start, kMetaHeaderSize + 1, 0x00);

    PowerCutDevice cut(dev_, budget);
    FsckOptions fo;
    fo.repair = FsckRepair::kAll;
    auto cut_run = check_filesystem(cut, fo);
    finished = !cut.cut();
    // A repair whose writes failed (its journal aborted) is never
    // reported as done: fsck exits with an operational error.
    if (!finished) {
      EXPECT_FALSE(cut_run.ok()) << "a repair cut off was reported as made";
    }
    dev_.crash();

    std::string lines;
    FsckResult fix = fsck(FsckRepair::kAll, false, &lines);
    EXPECT_EQ(fix.errors + fix.checksum_mismatches, 0u) << lines;
    FsckResult again = fsck(FsckRepair::kNone, true, &lines);
    EXPECT_EQ(again.errors + again.checksum_mismatches + again.corrections_skipped, 0u) << lines;
    mount();
    EXPECT_EQ(read_back("f0"), data_);
    EXPECT_EQ(read_back("f1"), data_);
    EXPECT_EQ(fs_->lookup(kRootIno, "f2").error(), ENOENT);
    unmount();
    if (HasFailure()) break;
  }
  EXPECT_TRUE(finished) << "the repair never finished within the budgets tried";
  // Replay, the superblocks, the log blocks, the commit, the checkpoint:
  // the cut points cover many distinct states.
  EXPECT_GT(budget, 5);
  std::printf("repair cut off at each of %d writes and flushes\n", budget - 1);
}

TEST_F(FsckRepairTest, LinkCountsBlockCountsAndParentPointersAreRecomputed) {
  mount();
  auto d = fs_->mkdir(kRootIno, "d", 0755, {});
  ASSERT_TRUE(d.ok());
  auto sub = fs_->mkdir(d->ino, "sub", 0755, {});
  ASSERT_TRUE(sub.ok());
  uint64_t f = make_file("f", d->ino);
  ASSERT_TRUE(fs_->link(f, kRootIno, "f2").ok());
  unmount();
  edit_inode(f, [](DiskInode& i) {
    i.nlink = 5;
    i.blocks = 99;
  });
  edit_inode(d->ino, [](DiskInode& i) { i.nlink = 7; });
  edit_inode(sub->ino, [](DiskInode& i) { i.rdev = kRootIno; });

  std::string found = expect_found_and_repaired(FsckRepair::kPreen);
  EXPECT_NE(found.find("inode " + std::to_string(f) + ": link count 5, should be 2"),
            std::string::npos)
      << found;
  EXPECT_NE(found.find("inode " + std::to_string(f) + ": block count 99"), std::string::npos)
      << found;
  EXPECT_NE(found.find("inode " + std::to_string(d->ino) + ": link count 7, should be 3"),
            std::string::npos)
      << found;
  EXPECT_NE(found.find("inode " + std::to_string(sub->ino) + ": '..' names 1 but it lives in " +
                       std::to_string(d->ino)),
            std::string::npos)
      << found;
  EXPECT_EQ(inode(f).nlink, 2u);
  EXPECT_EQ(inode(sub->ino).rdev, d->ino);

  mount();
  EXPECT_EQ(read_back("f", d->ino), data_);
  EXPECT_EQ(read_back("f2"), data_);
  auto a = fs_->getattr(f);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->nlink, 2u);
}

// Link count 0 and in no directory, in a filesystem marked cleanly
// unmounted: nothing would ever free it. -p frees it and its blocks.
TEST_F(FsckRepairTest, AnOrphanOfACleanFilesystemIsFreedWithItsBlocks) {
  mount();
  uint64_t keep = make_file("keep");
  uint64_t f = make_file("orphan");
  ASSERT_TRUE(fs_->setxattr(f, "user.x", "1", 0).ok());
  ASSERT_TRUE(fs_->fsync(f, false).ok());
  unmount();
  const uint64_t blk = first_block(f);
  const uint64_t root_blk = first_block(kRootIno);
  const size_t off = record_offset(root_blk, "orphan");
  // "orphan" was created last, so its record is the block's last: a zero
  // inode number there ends the block without it.
  edit_block(root_blk, [&](uint8_t* b) { put_le64(b + kMetaHeaderSize + off, 0); });
  edit_inode(f, [](DiskInode& i) { i.nlink = 0; });

  std::string found = expect_found_and_repaired(FsckRepair::kPreen);
  EXPECT_NE(found.find("inode " + std::to_string(f) + ": link count 0 and in no directory"),
            std::string::npos)
      << found;
  EXPECT_EQ(inode(f).mode, 0u) << "the orphan's slot is free";
  const Superblock sb = superblock();
  std::vector<uint8_t> bm = dev_.durable_block(sb.block_bitmap_start + blk / kBitsPerBitmapBlock);
  const uint64_t i = blk % kBitsPerBitmapBlock;
  EXPECT_FALSE(bm[kMetaHeaderSize + i / 8] >> (i % 8) & 1) << "its data block is free";

  mount();
  EXPECT_EQ(read_back("keep"), data_);
  EXPECT_EQ(fs_->lookup(kRootIno, "orphan").error(), ENOENT);
  (void)keep;
}

// The same with a multi-block xattr set: the index and every member are
// freed with the orphan (core/FORMAT.md, "Xattr sets of several blocks").
TEST_F(FsckRepairTest, AnOrphansXattrIndexAndEveryMemberAreFreedWithIt) {
  mount();
  make_file("keep");
  uint64_t f = make_file("orphan");
  ASSERT_TRUE(fs_->setxattr(f, "user.long", std::string(kXattrValueMax, 'L'), 0).ok());
  ASSERT_TRUE(fs_->fsync(f, false).ok());
  unmount();
  const DiskInode d = inode(f);
  auto index = dev_.durable_block(d.xattr_block);
  ASSERT_EQ(decode_meta_header(index.data()).magic, kMagicXattrIndex);
  auto x = decode_xattr_index(index.data() + kMetaHeaderSize, nullptr);
  ASSERT_TRUE(x.ok());
  std::vector<uint64_t> blocks = x->members;
  blocks.push_back(d.xattr_block);
  const uint64_t root_blk = first_block(kRootIno);
  const size_t off = record_offset(root_blk, "orphan");
  edit_block(root_blk, [&](uint8_t* b) { put_le64(b + kMetaHeaderSize + off, 0); });
  edit_inode(f, [](DiskInode& i) { i.nlink = 0; });

  expect_found_and_repaired(FsckRepair::kPreen);
  const Superblock sb = superblock();
  for (uint64_t blk : blocks) {
    std::vector<uint8_t> bm = dev_.durable_block(sb.block_bitmap_start + blk / kBitsPerBitmapBlock);
    const uint64_t i = blk % kBitsPerBitmapBlock;
    EXPECT_FALSE(bm[kMetaHeaderSize + i / 8] >> (i % 8) & 1) << "xattr block " << blk << " kept";
  }
}

// An entry that names a free inode has no fix -p may make (it drops a
// name); -y drops it.
TEST_F(FsckRepairTest, AnEntryNamingAFreeInodeIsLeftByPreenAndDroppedByYes) {
  mount();
  uint64_t a = make_file("a");
  uint64_t b = make_file("b");
  unmount();
  edit_inode(b, [](DiskInode& i) {
    uint32_t gen = i.generation;
    i = DiskInode{};
    i.generation = gen;
  });

  std::string lines;
  FsckResult preen = fsck(FsckRepair::kPreen, false, &lines);
  EXPECT_GT(preen.errors, 0u) << lines;
  EXPECT_NE(lines.find("entry 'b' points to free inode " + std::to_string(b)), std::string::npos)
      << lines;
  EXPECT_EQ(lines.find("entry 'b' points to free inode " + std::to_string(b) + ": repaired"),
            std::string::npos)
      << lines;

  std::string found = expect_found_and_repaired(FsckRepair::kAll);
  EXPECT_NE(found.find("entry 'b' points to free inode"), std::string::npos) << found;

  mount();
  EXPECT_EQ(read_back("a"), data_);
  EXPECT_EQ(fs_->lookup(kRootIno, "b").error(), ENOENT);
  // The name is free again and the freed slot and blocks are usable.
  make_file("b");
  EXPECT_EQ(read_back("b"), data_);
  (void)a;
}

TEST_F(FsckRepairTest, AnInodeOfAnInvalidTypeIsFreedWithItsEntryAndBlocks) {
  mount();
  make_file("a");
  uint64_t bad = make_file("bad");
  unmount();
  edit_inode(bad, [](DiskInode& i) { i.mode = 0170000 | 0644; });

  std::string found = expect_found_and_repaired(FsckRepair::kAll);
  EXPECT_NE(found.find("inode " + std::to_string(bad) + ": invalid file type"), std::string::npos)
      << found;
  EXPECT_EQ(inode(bad).mode, 0u);

  mount();
  EXPECT_EQ(read_back("a"), data_);
  EXPECT_EQ(fs_->lookup(kRootIno, "bad").error(), ENOENT);
}

// The fsck fuzzer's find: a short symlink whose mode became a directory's.
// Inline data belongs to symlinks only; the engine refuses such an inode
// (EUCLEAN) and fsck frees it. Before, fsck took it for a directory whose
// '..' it never read, "repaired" a '..' of 0, and found it again after.
TEST_F(FsckRepairTest, InlineDataOnADirectoryIsFreedAndRepairSticks) {
  mount();
  make_file("a");
  auto l = fs_->symlink(kRootIno, "l", "short", {});
  ASSERT_TRUE(l.ok());
  unmount();
  edit_inode(l->ino, [](DiskInode& i) { i.mode = S_IFDIR | 0755; });

  mount();
  EXPECT_EQ(fs_->readdir(l->ino, 0, [](const DirListEntry&) { return true; }).error(), EUCLEAN);
  unmount();

  std::string found = expect_found_and_repaired(FsckRepair::kAll);
  EXPECT_NE(found.find("inode " + std::to_string(l->ino) +
                       ": inline data on an inode that is not a symlink"),
            std::string::npos)
      << found;
  EXPECT_EQ(inode(l->ino).mode, 0u);

  mount();
  EXPECT_EQ(read_back("a"), data_);
  EXPECT_EQ(fs_->lookup(kRootIno, "l").error(), ENOENT);
}

// The fsck fuzzer's find: the root directory flagged as holding inline
// data was freed by -y like any untrusted inode, which left a filesystem
// without a root that -y reported as fixed and the next check did not.
// The root is never freed: it is an error left, and everything it holds
// stays, so undoing the corruption gives the filesystem back whole.
TEST_F(FsckRepairTest, TheRootIsNeverFreedEvenWhenItCannotBeTrusted) {
  struct Corruption {
    const char* line;
    std::function<void(DiskInode&)> apply;
  };
  const Corruption corruptions[] = {
      {"inode 1: inline data on an inode that is not a symlink",
       [](DiskInode& i) { i.flags |= kInodeInlineData; }},
      {"inode 1: invalid file type", [](DiskInode& i) { i.mode = 0170000 | 0755; }},
  };
  mount();
  make_file("a");
  unmount();
  for (const Corruption& c : corruptions) {
    SCOPED_TRACE(c.line);
    const DiskInode root = inode(kRootIno);
    edit_inode(kRootIno, c.apply);

    std::string lines;
    FsckResult fix = fsck(FsckRepair::kAll, false, &lines);
    EXPECT_GT(fix.errors, 0u) << lines;
    EXPECT_NE(lines.find(std::string(c.line) + " (the root directory is never freed)"),
              std::string::npos)
        << lines;
    EXPECT_EQ(inode(kRootIno).generation, root.generation);
    EXPECT_NE(inode(kRootIno).mode, 0u) << "the root was freed";
    FsckResult again = fsck(FsckRepair::kNone, true, &lines);
    EXPECT_EQ(again.errors, fix.errors) << "-y left errors it did not report:\n" << lines;

    edit_inode(kRootIno, [&](DiskInode& i) { i = root; });
    FsckResult undone = fsck(FsckRepair::kNone, true, &lines);
    EXPECT_EQ(undone.errors + undone.checksum_mismatches, 0u) << lines;
    mount();
    EXPECT_EQ(read_back("a"), data_);
    unmount();
  }
}

TEST_F(FsckRepairTest, AnEntryTypeThatDisagreesWithTheModeIsRewritten) {
  mount();
  uint64_t f = make_file("f");
  unmount();
  const uint64_t root_blk = first_block(kRootIno);
  const size_t off = record_offset(root_blk, "f");
  edit_block(root_blk, [&](uint8_t* b) { b[kMetaHeaderSize + off + 8] = kTypeLnk; });

  std::string found = expect_found_and_repaired(FsckRepair::kPreen);
  EXPECT_NE(found.find("entry 'f' gives inode " + std::to_string(f) + " type 10, its mode says 8"),
            std::string::npos)
      << found;
  EXPECT_EQ(dev_.durable_block(root_blk)[kMetaHeaderSize + record_offset(root_blk, "f") + 8],
            kTypeReg);

  mount();
  EXPECT_EQ(read_back("f"), data_);
}

// An inode table block that fails its checksum hides 15 inodes: the
// entries naming them are not "entries naming free inodes", and their
// blocks are not leaked. -y must drop no entry and free no block while
// part of the filesystem could not be read.
TEST_F(FsckRepairTest, NothingIsDroppedOrFreedWhileAnInodeTableBlockIsUnreadable) {
  mount();
  std::vector<uint64_t> inos = make_files(20);
  unmount();
  const Superblock sb = superblock();
  const uint64_t hidden = inos.back();
  ASSERT_GT(hidden, uint64_t(kInodesPerBlock)) << "the last file is in the second table block";
  const uint64_t root_blk = first_block(kRootIno);
  const uint64_t hidden_blk = first_block(hidden);
  const std::vector<uint8_t> dir_before = dev_.durable_block(root_blk);
  const uint64_t bitmap = sb.block_bitmap_start + hidden_blk / kBitsPerBitmapBlock;
  const std::vector<uint8_t> bitmap_before = dev_.durable_block(bitmap);
  dev_.poke(inode_block(sb, hidden), kMetaHeaderSize + 7, 0xee);

  std::string lines;
  FsckResult fix = fsck(FsckRepair::kAll, false, &lines);
  EXPECT_GT(fix.errors, 0u) << lines;
  EXPECT_NE(lines.find("inode table block " + std::to_string(inode_block(sb, hidden)) +
                       " is corrupt"),
            std::string::npos)
      << lines;
  EXPECT_EQ(lines.find("points to free inode"), std::string::npos) << lines;
  EXPECT_EQ(dev_.durable_block(root_blk), dir_before) << "entries were dropped:\n" << lines;
  EXPECT_EQ(dev_.durable_block(bitmap), bitmap_before) << "blocks were freed:\n" << lines;
}

// A data block whose bytes fail their checksum has no safe fix: the
// checksum is never recomputed over them. -y repairs what it can beside
// it (here a block count), reports the mismatch, leaves both the block
// and its checksum, and ends with errors left.
TEST_F(FsckRepairTest, ADataChecksumMismatchIsLeftWhileTheRestIsRepaired) {
  mount();
  uint64_t f = make_file("f");
  unmount();
  const uint64_t blk = first_block(f);
  const uint64_t recorded = checksum_entry(blk);
  dev_.poke(blk, 100, 'X');
  edit_inode(f, [](DiskInode& i) { i.blocks = 42; });

  std::string lines;
  FsckResult fix = fsck(FsckRepair::kAll, false, &lines);
  EXPECT_EQ(fix.checksum_mismatches, 1u) << lines;
  EXPECT_EQ(fix.errors, 1u) << lines;
  EXPECT_EQ(fix.repairs, 1u) << lines;
  EXPECT_EQ(checksum_entry(blk), recorded);
  EXPECT_EQ(dev_.durable_block(blk)[100], 'X');
  FsckResult again = fsck(FsckRepair::kNone, true, &lines);
  EXPECT_EQ(again.errors, 1u) << "only the mismatch is left:\n" << lines;
  EXPECT_EQ(again.checksum_mismatches, 1u) << lines;
  EXPECT_EQ(inode(f).blocks, 4u);

  mount();
  char buf[4096];
  EXPECT_EQ(fs_->read(f, 0, sizeof buf, buf).error(), EIO);
}

}  // namespace
}  // namespace stablefs
