// Xattr sets larger than one block (core/FORMAT.md, "Xattr sets of several
// blocks"): the encodings and their bounds, and the engine storing,
// growing, shrinking and freeing such sets, with fsck checking what it
// leaves, including the corruption it must find.
#include <sys/xattr.h>

#include <atomic>
#include <thread>

#include <gtest/gtest.h>

#include "core/base/endian.h"
#include "core/base/format.h"
#include "core/fsck.h"
#include "core/xattr_format.h"
#include "tests/unit/engine_fixture.h"

namespace stablefs {
namespace {

// generic/020's names and values.
std::string attr_name(int i) { return "user.attribute_" + std::to_string(i); }
std::string attr_value(int i) { return "value_" + std::to_string(i); }

TEST(XattrFormat, ASetRoundTripsWithValuesOf64KiB) {
  XattrMap xs = {{"user.a", ""}, {"user.big", std::string(kXattrValueMax, 'b')},
                 {"user.z", "zz"}};
  const std::string set = encode_xattr_set(xs);
  EXPECT_EQ(set.size(), xattr_encoded_size(xs, XattrLayout::kSet));
  auto back = decode_xattr_records(reinterpret_cast<const uint8_t*>(set.data()), set.size(),
                                   XattrLayout::kSet);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, xs);
  EXPECT_FALSE(fits_one_xattr_block(xs));
}

TEST(XattrFormat, RecordsRunningPastTheEndOrTooLongAreMalformed) {
  XattrMap xs = {{"user.a", "1"}, {"user.b", "22"}};
  std::string set = encode_xattr_set(xs);
  auto parse = [](const std::string& s) {
    return parse_xattr_records(reinterpret_cast<const uint8_t*>(s.data()), s.size(),
                               XattrLayout::kSet, [](std::string_view, std::string_view) {});
  };
  EXPECT_EQ(parse(set), "");
  EXPECT_EQ(parse(set.substr(0, set.size() - 1)), "record 1 of 2 runs past the end of the set");
  std::string huge = set;
  put_le32(reinterpret_cast<uint8_t*>(huge.data()) + kXattrSetHeader + 1, kXattrValueMax + 1);
  huge.resize(huge.size() + kXattrValueMax + 8);
  EXPECT_NE(parse(huge).find("has a value of 65537 bytes"), std::string::npos) << parse(huge);
  std::string empty_name = set;
  empty_name[kXattrSetHeader] = 0;
  EXPECT_NE(parse(empty_name).find("empty name"), std::string::npos);
}

TEST(XattrFormat, TheIndexDecoderChecksCountsAgainstTheSetSize) {
  XattrIndex x;
  x.set_bytes = kMetaPayload + 1;
  x.set_hash = 42;
  x.members = {100, 101};
  uint8_t payload[kMetaPayload];
  encode_xattr_index(x, payload);
  auto back = decode_xattr_index(payload, nullptr);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->members, x.members);
  EXPECT_EQ(back->set_hash, 42u);
  std::string why;
  x.members = {100, 101, 102};  // one too many for the size
  encode_xattr_index(x, payload);
  EXPECT_FALSE(decode_xattr_index(payload, &why).ok());
  EXPECT_NE(why.find("cannot hold"), std::string::npos) << why;
  x.set_bytes = kXattrMaxSetBytes + kMetaPayload;
  x.members.assign(kXattrMaxMembers + 1, 7);
  encode_xattr_index(x, payload);
  EXPECT_FALSE(decode_xattr_index(payload, &why).ok());
  x.set_bytes = kMetaPayload + 1;
  x.members = {100, 0};
  encode_xattr_index(x, payload);
  EXPECT_FALSE(decode_xattr_index(payload, &why).ok());
  EXPECT_NE(why.find("block 0"), std::string::npos) << why;
}

TEST(XattrFormat, BoundsRefuseASetTooLargeOrWithTooManyNamesToList) {
  XattrMap xs;
  for (int i = 0; i < 3; i++) xs["user.v" + std::to_string(i)] = std::string(kXattrValueMax, 'v');
  EXPECT_TRUE(check_xattr_set_bounds(xs).ok());
  xs["user.v3"] = std::string(kXattrValueMax, 'v');
  EXPECT_EQ(check_xattr_set_bounds(xs).error(), ENOSPC);
  // 300 names of 255 bytes: a small set, but its list would be 76800 bytes.
  XattrMap names;
  for (int i = 0; i < 300; i++) {
    std::string n = "user." + std::to_string(i);
    names[n + std::string(kXattrNameMax - n.size(), 'n')] = "";
  }
  EXPECT_LT(xattr_encoded_size(names, XattrLayout::kSet), kXattrMaxSetBytes);
  EXPECT_EQ(check_xattr_set_bounds(names).error(), ENOSPC);
}

class LargeXattrTest : public EngineTest {
 protected:
  DiskInode inode_on_disk(uint64_t ino) {
    auto sb = superblock();
    auto blk = dev_.durable_block(inode_block(sb, ino));
    return decode_inode(blk.data() + kMetaHeaderSize + inode_slot(ino) * kInodeSize);
  }
  Superblock superblock() {
    auto blk = dev_.durable_block(kSuperblockA);
    return decode_superblock(blk.data(), kSuperblockA, dev_.block_count(), nullptr).value();
  }
  uint32_t magic_of(uint64_t block) {
    return decode_meta_header(dev_.durable_block(block).data()).magic;
  }
  std::string fsck_report(uint64_t* errors = nullptr, FsckRepair repair = FsckRepair::kNone) {
    FsckOptions fo;
    fo.read_only = repair == FsckRepair::kNone;
    fo.repair = repair;
    std::string lines;
    fo.report = [&](const std::string& l) { lines += l + "\n"; };
    auto r = check_filesystem(dev_, fo);
    EXPECT_TRUE(r.ok());
    if (errors) *errors = r.ok() ? r->errors : 0;
    return lines;
  }
  void expect_fsck_clean() {
    uint64_t errors = 1;
    std::string lines = fsck_report(&errors);
    EXPECT_EQ(errors, 0u) << lines;
  }
  // A file with generic/020's 1000 attributes and a 64 KiB value.
  uint64_t file_with_large_set(const char* name, int attrs = 1000) {
    uint64_t f = create(name);
    for (int i = 0; i < attrs; i++)
      EXPECT_TRUE(fs_->setxattr(f, attr_name(i), attr_value(i), 0).ok()) << i;
    EXPECT_TRUE(fs_->setxattr(f, "user.long", std::string(kXattrValueMax, 'L'), 0).ok());
    return f;
  }
  uint64_t blocks512(uint64_t ino) { return fs_->getattr(ino)->blocks512; }
};

TEST_F(LargeXattrTest, AThousandAttributesAndA64KiBValueSurviveARemount) {
  mount();
  uint64_t f = file_with_large_set("f");
  unmount();
  mount();
  auto list = fs_->listxattr(f);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(std::count(list->begin(), list->end(), '\0'), 1001);
  for (int i = 0; i < 1000; i++) ASSERT_EQ(*fs_->getxattr(f, attr_name(i)), attr_value(i)) << i;
  EXPECT_EQ(*fs_->getxattr(f, "user.long"), std::string(kXattrValueMax, 'L'));
  unmount();
  const DiskInode d = inode_on_disk(f);
  EXPECT_EQ(magic_of(d.xattr_block), kMagicXattrIndex);
  EXPECT_TRUE(superblock().incompat & kIncompatLargeXattrs);
  expect_fsck_clean();
}

TEST_F(LargeXattrTest, EveryXattrBlockIsChargedToTheInode) {
  mount();
  uint64_t f = file_with_large_set("f");
  const XattrMap probe = [&] {
    XattrMap m;
    for (int i = 0; i < 1000; i++) m[attr_name(i)] = attr_value(i);
    m["user.long"] = std::string(kXattrValueMax, 'L');
    return m;
  }();
  const uint64_t members = xattr_members_for(xattr_encoded_size(probe, XattrLayout::kSet));
  EXPECT_GE(members, 17u);
  EXPECT_EQ(blocks512(f), (1 + members) * (kBlockSize / 512));
  unmount();
  expect_fsck_clean();
}

TEST_F(LargeXattrTest, ASetPastTheBoundIsRefusedWithENOSPCAndNothingChanges) {
  mount();
  uint64_t f = create("f");
  for (int i = 0; i < 3; i++)
    ASSERT_TRUE(fs_->setxattr(f, "user.v" + std::to_string(i), std::string(kXattrValueMax, 'v'), 0).ok());
  const uint64_t charged = blocks512(f);
  EXPECT_EQ(fs_->setxattr(f, "user.v3", std::string(kXattrValueMax, 'v'), 0).error(), ENOSPC);
  EXPECT_EQ(fs_->getxattr(f, "user.v3").error(), ENODATA);
  EXPECT_EQ(blocks512(f), charged);
  EXPECT_EQ(fs_->setxattr(f, "user.too_long", std::string(kXattrValueMax + 1, 'v'), 0).error(),
            E2BIG);
  EXPECT_EQ(fs_->setxattr(f, "user." + std::string(kXattrNameMax, 'n'), "v", 0).error(), ERANGE);
  // What still fits takes all 64 members: one handle of the largest size.
  ASSERT_TRUE(fs_->setxattr(f, "user.v3", std::string(60000, 'w'), 0).ok());
  EXPECT_EQ(blocks512(f), (1 + kXattrMaxMembers) * (kBlockSize / 512));
  unmount();
  expect_fsck_clean();
  mount();
  EXPECT_EQ(fs_->getxattr(f, "user.v3")->size(), 60000u);
}

// A full device: the blocks for the index and members cannot all be had,
// the ones taken are given back, and the old set stays as it was.
TEST_F(LargeXattrTest, GrowingOnAFullDeviceFailsWithENOSPCKeepsTheOldSetAndWorksWithRoom) {
  mount();
  uint64_t f = create("f");
  ASSERT_TRUE(fs_->setxattr(f, "user.small", "s", 0).ok());
  const uint64_t charged = blocks512(f);
  // Leave fewer free blocks than the set needs, more than none.
  uint64_t big = create("big");
  ASSERT_TRUE(fs_->fallocate(big, 0, 0, (fs_->statfs()->blocks_free - 8) * kBlockSize).ok());
  ASSERT_TRUE(fs_->fsync(big, false).ok());
  const uint64_t free_blocks = fs_->statfs()->blocks_free;
  ASSERT_GT(free_blocks, 0u);
  ASSERT_LT(free_blocks, 17u);
  EXPECT_EQ(fs_->setxattr(f, "user.long", std::string(kXattrValueMax, 'L'), 0).error(), ENOSPC);
  EXPECT_EQ(fs_->getxattr(f, "user.long").error(), ENODATA);
  EXPECT_EQ(*fs_->getxattr(f, "user.small"), "s");
  EXPECT_EQ(blocks512(f), charged);
  EXPECT_EQ(fs_->statfs()->blocks_free, free_blocks) << "blocks taken for the set were kept";
  unmount();
  EXPECT_EQ(magic_of(inode_on_disk(f).xattr_block), kMagicXattr);
  expect_fsck_clean();
  // With room again, the same set is stored.
  mount();
  ASSERT_TRUE(fs_->unlink(kRootIno, "big").ok());  // no lookups after a remount: freed now
  ASSERT_TRUE(fs_->fsync(f, false).ok());
  ASSERT_TRUE(fs_->setxattr(f, "user.long", std::string(kXattrValueMax, 'L'), 0).ok());
  EXPECT_EQ(fs_->getxattr(f, "user.long")->size(), kXattrValueMax);
}

TEST_F(LargeXattrTest, ShrinkingToOneBlockFreesTheIndexAndItsMembers) {
  mount();
  uint64_t f = create("f");
  ASSERT_TRUE(fs_->setxattr(f, "user.small", "s", 0).ok());
  const uint64_t free_small = fs_->statfs()->blocks_free;
  const uint64_t one_block = blocks512(f);
  ASSERT_TRUE(fs_->setxattr(f, "user.long", std::string(kXattrValueMax, 'L'), 0).ok());
  EXPECT_GT(blocks512(f), one_block);
  EXPECT_LT(fs_->statfs()->blocks_free, free_small);
  ASSERT_TRUE(fs_->removexattr(f, "user.long").ok());
  EXPECT_EQ(blocks512(f), one_block);
  EXPECT_EQ(fs_->statfs()->blocks_free, free_small) << "blocks of the large set leaked";
  EXPECT_EQ(*fs_->getxattr(f, "user.small"), "s");
  unmount();
  EXPECT_EQ(magic_of(inode_on_disk(f).xattr_block), kMagicXattr) << "not back to the old form";
  expect_fsck_clean();
}

TEST_F(LargeXattrTest, UnlinkFreesEveryXattrBlock) {
  mount();
  create("first");  // the root's directory block
  const uint64_t free_before = fs_->statfs()->blocks_free;
  uint64_t f = file_with_large_set("f", 200);
  EXPECT_LT(fs_->statfs()->blocks_free, free_before);
  ASSERT_TRUE(fs_->unlink(kRootIno, "f").ok());
  fs_->forget(f, 1);
  EXPECT_EQ(fs_->statfs()->blocks_free, free_before);
  unmount();
  expect_fsck_clean();
}

// Images that never hold a multi-block set keep the old form exactly, so
// the previous binary still mounts them.
TEST_F(LargeXattrTest, SmallSetsLeaveTheFeatureBitClear) {
  mount();
  uint64_t f = create("f");
  for (int i = 0; i < 100; i++) ASSERT_TRUE(fs_->setxattr(f, attr_name(i), attr_value(i), 0).ok());
  unmount();
  EXPECT_FALSE(superblock().incompat & kIncompatLargeXattrs);
  EXPECT_EQ(magic_of(inode_on_disk(f).xattr_block), kMagicXattr);
  expect_fsck_clean();
}

// Growing a set keeps its index and the members before the change.
TEST_F(LargeXattrTest, GrowingASetRewritesItInPlace) {
  mount();
  uint64_t f = file_with_large_set("f", 10);
  unmount();
  const DiskInode before = inode_on_disk(f);
  mount();
  ASSERT_TRUE(fs_->setxattr(f, "user.zzz", std::string(5000, 'z'), 0).ok());
  unmount();
  const DiskInode after = inode_on_disk(f);
  EXPECT_EQ(after.xattr_block, before.xattr_block);
  XattrMap model;
  for (int i = 0; i < 10; i++) model[attr_name(i)] = attr_value(i);
  model["user.long"] = std::string(kXattrValueMax, 'L');
  const uint64_t members_before = xattr_members_for(xattr_encoded_size(model, XattrLayout::kSet));
  model["user.zzz"] = std::string(5000, 'z');
  const uint64_t members_after = xattr_members_for(xattr_encoded_size(model, XattrLayout::kSet));
  ASSERT_GT(members_after, members_before);
  EXPECT_EQ(after.blocks, before.blocks + (members_after - members_before));
  expect_fsck_clean();
}

// The blocks of an index, corrupted one way at a time: fsck must say so.
class LargeXattrFsckTest : public LargeXattrTest {
 protected:
  XattrIndex index_of(uint64_t ino) {
    const DiskInode d = inode_on_disk(ino);
    auto blk = dev_.durable_block(d.xattr_block);
    return decode_xattr_index(blk.data() + kMetaHeaderSize, nullptr).value();
  }
  void write_block(uint64_t b, std::vector<uint8_t> blk, bool reseal) {
    if (reseal) seal_meta_block(blk.data(), b, decode_meta_header(blk.data()).txid);
    auto old = dev_.durable_block(b);
    for (size_t i = 0; i < blk.size(); i++)
      if (blk[i] != old[i]) dev_.poke(b, i, blk[i]);
  }
};

TEST_F(LargeXattrFsckTest, ACorruptMemberIsReported) {
  mount();
  uint64_t f = file_with_large_set("f", 50);
  unmount();
  expect_fsck_clean();
  const uint64_t member = index_of(f).members[1];
  auto blk = dev_.durable_block(member);
  blk[kMetaHeaderSize + 100] ^= 0xff;
  write_block(member, blk, false);
  uint64_t errors = 0;
  std::string lines = fsck_report(&errors);
  EXPECT_GE(errors, 1u);
  EXPECT_NE(lines.find("member 1 (block " + std::to_string(member) + ")"), std::string::npos)
      << lines;
  // The engine refuses to serve the set, never a part of it.
  mount();
  EXPECT_EQ(fs_->getxattr(f, "user.long").error(), EUCLEAN);
}

TEST_F(LargeXattrFsckTest, AMemberOfAnotherVersionOfTheSetIsReported) {
  mount();
  uint64_t f = file_with_large_set("f", 50);
  unmount();
  const uint64_t member = index_of(f).members[0];
  auto blk = dev_.durable_block(member);
  blk[kMetaHeaderSize + 20] ^= 0x01;  // valid block, other bytes: a stale write
  write_block(member, blk, true);
  uint64_t errors = 0;
  std::string lines = fsck_report(&errors);
  EXPECT_EQ(errors, 1u) << lines;
  EXPECT_NE(lines.find("hash mismatch"), std::string::npos) << lines;
}

TEST_F(LargeXattrFsckTest, AMemberClaimedTwiceIsReported) {
  mount();
  uint64_t a = file_with_large_set("a", 50);
  uint64_t b = file_with_large_set("b", 50);
  unmount();
  // b's index lists one of a's members instead of its own.
  const uint64_t stolen = index_of(a).members[2];
  const DiskInode db = inode_on_disk(b);
  XattrIndex xb = index_of(b);
  xb.members[2] = stolen;
  auto blk = dev_.durable_block(db.xattr_block);
  encode_xattr_index(xb, blk.data() + kMetaHeaderSize);
  write_block(db.xattr_block, blk, true);
  uint64_t errors = 0;
  std::string lines = fsck_report(&errors);
  EXPECT_GE(errors, 1u);
  EXPECT_NE(lines.find("block " + std::to_string(stolen) + " is claimed by inode " +
                       std::to_string(a) + " and inode " + std::to_string(b)),
            std::string::npos)
      << lines;
  EXPECT_NE(lines.find("belongs to inode " + std::to_string(a)), std::string::npos) << lines;
}

TEST_F(LargeXattrFsckTest, AnIndexOnAnImageWithoutTheFeatureIsReported) {
  mount();
  file_with_large_set("f", 50);
  unmount();
  Superblock sb = superblock();
  sb.incompat &= ~kIncompatLargeXattrs;
  for (uint64_t nr : {kSuperblockA, kSuperblockB}) {
    std::vector<uint8_t> blk(kBlockSize);
    encode_superblock(blk.data(), sb, nr);
    write_block(nr, blk, false);
  }
  uint64_t errors = 0;
  std::string lines = fsck_report(&errors);
  EXPECT_EQ(errors, 1u) << lines;
  EXPECT_NE(lines.find("lacks the large_xattrs feature"), std::string::npos) << lines;
}

// An index that fails verification leaves its members unknown: a repair
// must not free them as leaked.
TEST_F(LargeXattrFsckTest, ACorruptIndexKeepsItsMembersFromBeingFreed) {
  mount();
  uint64_t f = file_with_large_set("f", 50);
  unmount();
  const DiskInode d = inode_on_disk(f);
  const XattrIndex x = index_of(f);
  auto blk = dev_.durable_block(d.xattr_block);
  blk[kMetaHeaderSize + 40] ^= 0xff;
  write_block(d.xattr_block, blk, false);
  uint64_t errors = 0;
  std::string lines = fsck_report(&errors, FsckRepair::kAll);
  EXPECT_GE(errors, 1u) << lines;
  auto bbmp = superblock().block_bitmap_start;
  for (uint64_t m : x.members) {
    auto bm = dev_.durable_block(bbmp + m / kBitsPerBitmapBlock);
    const uint64_t bit = m % kBitsPerBitmapBlock;
    EXPECT_TRUE(bm[kMetaHeaderSize + bit / 8] >> (bit % 8) & 1) << "member " << m << " freed\n"
                                                               << lines;
  }
}

}  // namespace
}  // namespace stablefs

namespace stablefs {
namespace {
// Every request thread (64 by default) storing sets of all 64 members at
// once, on the smallest log (1024 blocks, hard limit 256): the handles
// that joined one transaction could together add 64 x 68 blocks, and a
// transaction larger than the log aborts the journal (EIO, read-only).
// The xattr handles' credits (kXattrStoreCredits) bound them. A stress,
// not a deterministic race: before the credits it failed 2 to 4 runs in
// 10; JournalTest.HandlesWithCreditsWaitUntilTheirCreditsFit is the
// deterministic test of the rule.
TEST_F(LargeXattrTest, ConcurrentMaximalSetsFitTheSmallestLog) {
  mount();
  constexpr int kThreads = 64;
  std::vector<uint64_t> files;
  for (int i = 0; i < kThreads; i++) files.push_back(create(("f" + std::to_string(i)).c_str()));
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 0; i < kThreads; i++)
    threads.emplace_back([&, i] {
      for (int round = 0; round < 10; round++) {
        std::string v(60000, char('a' + round));
        for (int k = 0; k < 4; k++)
          if (!fs_->setxattr(files[i], "user.v" + std::to_string(k), v, 0).ok()) failures++;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0) << "a setxattr failed: the journal aborted?";
  EXPECT_EQ(fs_->getxattr(files[5], "user.v3")->size(), 60000u);
  unmount();
  expect_fsck_clean();
}
}  // namespace
}  // namespace stablefs
