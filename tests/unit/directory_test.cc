// Directory: the in-memory index over on-disk directory blocks.
#include "core/directory.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/base/endian.h"
#include "core/base/format.h"
#include "core/io/mem_device.h"
#include "journal/buffer.h"
#include "journal/journal.h"

namespace stablefs {
namespace {

constexpr uint64_t kDirIno = 42;
constexpr uint64_t kFirstDirBlock = 1200;
constexpr uint64_t kDeviceBlocks = 2048;

constexpr uint32_t kMinTestRecord = kDirRecordHeader + 20;

using Listing = std::vector<std::pair<uint64_t, DirEntry>>;  // (cookie, entry)

Listing list_all(const Directory& d, uint64_t after = 0) {
  Listing out;
  d.list(after, [&](const DirEntry& e, uint64_t cookie) {
    out.emplace_back(cookie, e);
    return true;
  });
  return out;
}

std::map<std::string, std::pair<uint64_t, uint8_t>> as_map(const Directory& d) {
  std::map<std::string, std::pair<uint64_t, uint8_t>> m;
  d.list(0, [&](const DirEntry& e, uint64_t) {
    EXPECT_TRUE(m.emplace(e.name, std::make_pair(e.ino, e.type)).second) << e.name;
    return true;
  });
  return m;
}

// Writes one raw record, bypassing every check, for corruption tests.
uint32_t put_record(MetaBuffer& buf, uint32_t pos, uint64_t ino, uint8_t type,
                    std::string_view name, int name_len = -1) {
  uint8_t* p = buf.payload() + pos;
  put_le64(p, ino);
  p[8] = type;
  p[9] = uint8_t(name_len < 0 ? name.size() : size_t(name_len));
  std::memcpy(p + kDirRecordHeader, name.data(), name.size());
  return pos + kDirRecordHeader + uint32_t(name.size());
}

// Fills a payload with valid records that end exactly at `target`, so a
// damaged record placed there is actually reached by the decoder.
uint32_t fill_to(MetaBuffer& buf, uint32_t target) {
  uint32_t pos = 0;
  for (int i = 0; target - pos > 2 * kMinTestRecord; i++) {
    uint32_t len = std::min<uint32_t>(255, target - pos - kMinTestRecord - kDirRecordHeader);
    std::string name = "fill" + std::to_string(i);
    name.resize(len, 'p');
    pos = put_record(buf, pos, 1000 + i, kTypeReg, name);
  }
  if (target > pos) {
    std::string name = "last";
    name.resize(target - pos - kDirRecordHeader, 'q');
    pos = put_record(buf, pos, 999, kTypeReg, name);
  }
  return pos;
}

class DirectoryTest : public ::testing::Test {
 protected:
  DirectoryTest() : journal_(dev_, cache_, JournalGeometry{100, 1024}, JournalPosition{0, 1}, opts()) {}

  static JournalOptions opts() {
    JournalOptions o;
    o.commit_interval = std::chrono::hours(1);  // tests commit explicitly
    o.persist_tail = [](JournalPosition) { return Status::Ok(); };
    return o;
  }

  Directory::GrowFn grower() {
    return [this](Handle&) -> Result<std::shared_ptr<MetaBuffer>> {
      grow_calls_++;
      return cache_.create(next_block_++, kMagicDirectory, kDirIno);
    };
  }

  Status add(Directory& d, std::string_view name, uint64_t ino, uint8_t type = kTypeReg) {
    Handle h = journal_.start();
    return d.add(h, name, ino, type, grower());
  }
  Status remove(Directory& d, std::string_view name) {
    Handle h = journal_.start();
    return d.remove(h, name);
  }
  Status replace(Directory& d, std::string_view name, uint64_t ino, uint8_t type) {
    Handle h = journal_.start();
    return d.replace(h, name, ino, type);
  }

  // A fresh Directory decoded from the live blocks' bytes.
  std::unique_ptr<Directory> reload(const Directory& d) {
    auto r = Directory::load(kDirIno, d.blocks());
    EXPECT_TRUE(r.ok()) << r.error();
    return r.ok() ? std::move(*r) : nullptr;
  }

  // A hand-built directory block for load tests.
  std::shared_ptr<MetaBuffer> raw_block(uint64_t owner = kDirIno, uint32_t magic = kMagicDirectory) {
    return cache_.create(next_block_++, magic, owner);
  }

  MemDevice dev_{kDeviceBlocks};
  BufferCache cache_{dev_};
  Journal journal_;
  uint64_t next_block_ = kFirstDirBlock;
  int grow_calls_ = 0;
};

// ---- add / lookup / remove / replace ----

TEST_F(DirectoryTest, AddedEntryIsFoundByLookup) {
  Directory d(kDirIno);
  ASSERT_TRUE(add(d, "hello", 7, kTypeReg).ok());
  auto e = d.lookup("hello");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->name, "hello");
  EXPECT_EQ(e->ino, 7u);
  EXPECT_EQ(e->type, kTypeReg);
  EXPECT_EQ(d.size(), 1u);
  EXPECT_FALSE(d.empty());
  EXPECT_FALSE(d.lookup("hell").has_value());
  EXPECT_FALSE(d.lookup("hello2").has_value());
}

TEST_F(DirectoryTest, AddOfExistingNameFailsWithEexistAndKeepsOriginal) {
  Directory d(kDirIno);
  ASSERT_TRUE(add(d, "a", 7).ok());
  EXPECT_EQ(add(d, "a", 8).error(), EEXIST);
  EXPECT_EQ(d.lookup("a")->ino, 7u);
  EXPECT_EQ(d.size(), 1u);
}

TEST_F(DirectoryTest, NamesUpTo255BytesAreAcceptedLongerOnesAreNot) {
  Directory d(kDirIno);
  EXPECT_TRUE(add(d, std::string(255, 'x'), 7).ok());
  EXPECT_EQ(add(d, std::string(256, 'y'), 8).error(), ENAMETOOLONG);
  EXPECT_TRUE(d.lookup(std::string(255, 'x')).has_value());
  EXPECT_EQ(d.size(), 1u);
}

TEST_F(DirectoryTest, InvalidNamesAndInodesAreRejectedWithEinval) {
  Directory d(kDirIno);
  EXPECT_EQ(add(d, "", 7).error(), EINVAL);
  EXPECT_EQ(add(d, ".", 7).error(), EINVAL);
  EXPECT_EQ(add(d, "..", 7).error(), EINVAL);
  EXPECT_EQ(add(d, "a/b", 7).error(), EINVAL);
  EXPECT_EQ(add(d, std::string_view("a\0b", 3), 7).error(), EINVAL);
  EXPECT_EQ(add(d, "zero-ino", 0).error(), EINVAL);  // would read back as a terminator
  EXPECT_EQ(add(d, "bad-type", 7, 3).error(), EINVAL);
  EXPECT_TRUE(d.empty());
  EXPECT_EQ(d.block_count(), 0u);
  // Names that merely look special are fine.
  EXPECT_TRUE(add(d, "...", 7).ok());
  EXPECT_TRUE(add(d, ".hidden", 8).ok());
}

TEST_F(DirectoryTest, RemoveDeletesOnlyThatEntry) {
  Directory d(kDirIno);
  ASSERT_TRUE(add(d, "a", 1).ok());
  ASSERT_TRUE(add(d, "b", 2).ok());
  ASSERT_TRUE(remove(d, "a").ok());
  EXPECT_FALSE(d.lookup("a").has_value());
  EXPECT_EQ(d.lookup("b")->ino, 2u);
  EXPECT_EQ(d.size(), 1u);
  EXPECT_EQ(remove(d, "a").error(), ENOENT);
  EXPECT_EQ(remove(d, "never").error(), ENOENT);
  ASSERT_TRUE(remove(d, "b").ok());
  EXPECT_TRUE(d.empty());
  EXPECT_EQ(d.block_count(), 1u);  // directories never shrink
  // A removed name can come back.
  ASSERT_TRUE(add(d, "a", 9).ok());
  EXPECT_EQ(d.lookup("a")->ino, 9u);
}

TEST_F(DirectoryTest, ReplaceRepointsEntryAndKeepsItsCookie) {
  Directory d(kDirIno);
  ASSERT_TRUE(add(d, "a", 1, kTypeReg).ok());
  ASSERT_TRUE(add(d, "b", 2, kTypeReg).ok());
  Listing before = list_all(d);
  ASSERT_TRUE(replace(d, "a", 5, kTypeDir).ok());
  EXPECT_EQ(d.lookup("a")->ino, 5u);
  EXPECT_EQ(d.lookup("a")->type, kTypeDir);
  EXPECT_EQ(d.lookup("b")->ino, 2u);
  Listing after = list_all(d);
  ASSERT_EQ(after.size(), 2u);
  for (size_t i = 0; i < 2; i++) EXPECT_EQ(after[i].first, before[i].first);
  EXPECT_EQ(replace(d, "missing", 5, kTypeReg).error(), ENOENT);
  EXPECT_EQ(replace(d, "a", 0, kTypeReg).error(), EINVAL);
  // The change is in the block bytes, not just in memory.
  auto fresh = reload(d);
  EXPECT_EQ(fresh->lookup("a")->ino, 5u);
  EXPECT_EQ(fresh->lookup("a")->type, kTypeDir);
}

// ---- on-disk bytes ----

TEST_F(DirectoryTest, BlocksDecodeToTheSameEntriesAfterMixedUpdates) {
  Directory d(kDirIno);
  std::mt19937 rng(1234);
  std::map<std::string, std::pair<uint64_t, uint8_t>> model;
  for (int i = 0; i < 3000; i++) {
    std::string name = "n" + std::to_string(rng() % 700) + std::string(rng() % 40, 'z');
    switch (rng() % 3) {
      case 0: {
        Status s = add(d, name, i + 1, kTypeReg);
        EXPECT_EQ(s.error(), model.count(name) ? EEXIST : 0);
        if (s.ok()) model[name] = {uint64_t(i + 1), kTypeReg};
        break;
      }
      case 1: {
        Status s = remove(d, name);
        EXPECT_EQ(s.error(), model.count(name) ? 0 : ENOENT);
        model.erase(name);
        break;
      }
      case 2: {
        Status s = replace(d, name, i + 1, kTypeLnk);
        EXPECT_EQ(s.error(), model.count(name) ? 0 : ENOENT);
        if (s.ok()) model[name] = {uint64_t(i + 1), kTypeLnk};
        break;
      }
    }
  }
  EXPECT_EQ(as_map(d), model);
  auto fresh = reload(d);
  ASSERT_NE(fresh, nullptr);
  EXPECT_EQ(as_map(*fresh), model);
  EXPECT_EQ(fresh->block_count(), d.block_count());
}

TEST_F(DirectoryTest, GrowsIntoNewBlocksOnlyWhenNoBlockHasRoom) {
  Directory d(kDirIno);
  // 265-byte records: 15 fit in a 4032-byte payload.
  auto big = [](int i) { return std::to_string(1000 + i) + std::string(251, 'n'); };
  for (int i = 0; i < 15; i++) ASSERT_TRUE(add(d, big(i), i + 1).ok());
  EXPECT_EQ(grow_calls_, 1);
  EXPECT_EQ(d.block_count(), 1u);
  ASSERT_TRUE(add(d, big(15), 16).ok());
  EXPECT_EQ(grow_calls_, 2);
  for (int i = 16; i < 40; i++) ASSERT_TRUE(add(d, big(i), i + 1).ok());
  EXPECT_EQ(d.block_count(), 3u);
  EXPECT_EQ(grow_calls_, 3);

  // Space freed in a full block, and the rest of the last block, are used
  // before growing again: 1 slot in block 0, 5 in block 2.
  ASSERT_TRUE(remove(d, big(3)).ok());
  for (int i = 40; i < 46; i++) ASSERT_TRUE(add(d, big(i), i + 1).ok());
  EXPECT_EQ(grow_calls_, 3);
  ASSERT_TRUE(add(d, big(46), 47).ok());
  EXPECT_EQ(grow_calls_, 4);
  EXPECT_EQ(d.block_count(), 4u);

  auto fresh = reload(d);
  EXPECT_EQ(as_map(*fresh), as_map(d));
  EXPECT_EQ(fresh->size(), 46u);
}

TEST_F(DirectoryTest, GrowFailureLeavesDirectoryUnchanged) {
  Directory d(kDirIno);
  Handle h = journal_.start();
  auto no_space = [](Handle&) -> Result<std::shared_ptr<MetaBuffer>> { return err(ENOSPC); };
  EXPECT_EQ(d.add(h, "a", 1, kTypeReg, no_space).error(), ENOSPC);
  EXPECT_TRUE(d.empty());
  EXPECT_FALSE(d.lookup("a").has_value());
  EXPECT_EQ(d.block_count(), 0u);
}

TEST_F(DirectoryTest, EntriesSurviveCommitCheckpointAndRereadFromDevice) {
  Directory d(kDirIno);
  {
    Handle h = journal_.start();
    for (int i = 0; i < 2000; i++)
      ASSERT_TRUE(d.add(h, "file-" + std::to_string(i), 100 + i, kTypeReg, grower()).ok());
  }
  ASSERT_TRUE(journal_.commit().ok());
  {
    Handle h = journal_.start();
    for (int i = 0; i < 2000; i += 3) ASSERT_TRUE(d.remove(h, "file-" + std::to_string(i)).ok());
    ASSERT_TRUE(d.replace(h, "file-1", 5, kTypeDir).ok());
  }
  ASSERT_TRUE(journal_.shutdown().ok());

  // A second cache reads the home locations, verifying every checksum.
  BufferCache cache2(dev_);
  std::vector<std::shared_ptr<MetaBuffer>> blocks;
  for (const auto& b : d.blocks()) {
    auto r = cache2.read(b->blocknr(), kMagicDirectory);
    ASSERT_TRUE(r.ok()) << "block " << b->blocknr() << ": " << r.error();
    blocks.push_back(*r);
  }
  auto fresh = Directory::load(kDirIno, blocks);
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(as_map(**fresh), as_map(d));
  EXPECT_EQ((*fresh)->size(), 2000u - 667u);
  EXPECT_EQ((*fresh)->lookup("file-1")->ino, 5u);
  EXPECT_FALSE((*fresh)->lookup("file-0").has_value());
}

// ---- readdir order ----

TEST_F(DirectoryTest, ListReturnsEveryLiveEntryOnceInCookieOrder) {
  Directory d(kDirIno);
  for (int i = 0; i < 500; i++) ASSERT_TRUE(add(d, "e" + std::to_string(i), i + 1).ok());
  for (int i = 0; i < 500; i += 7) ASSERT_TRUE(remove(d, "e" + std::to_string(i)).ok());
  Listing all = list_all(d);
  ASSERT_EQ(all.size(), d.size());
  std::set<std::string> seen;
  for (size_t i = 0; i < all.size(); i++) {
    EXPECT_GT(all[i].first, 2u);                  // 0, 1, 2 are start, ".", ".."
    EXPECT_LT(all[i].first, uint64_t(1) << 63);   // fits a positive off_t
    if (i > 0) {
      EXPECT_LT(all[i - 1].first, all[i].first);
    }
    EXPECT_TRUE(seen.insert(all[i].second.name).second) << all[i].second.name;
    EXPECT_EQ(d.lookup(all[i].second.name)->ino, all[i].second.ino);
  }
  for (int i = 0; i < 500; i += 7) EXPECT_EQ(seen.count("e" + std::to_string(i)), 0u);
}

TEST_F(DirectoryTest, CookiesStayPutWhenOtherEntriesAreRemoved) {
  Directory d(kDirIno);
  for (int i = 0; i < 200; i++) ASSERT_TRUE(add(d, "e" + std::to_string(i), i + 1).ok());
  std::map<std::string, uint64_t> cookie_of;
  for (auto& [c, e] : list_all(d)) cookie_of[e.name] = c;
  for (int i = 0; i < 200; i += 2) ASSERT_TRUE(remove(d, "e" + std::to_string(i)).ok());
  for (int i = 0; i < 50; i++) ASSERT_TRUE(add(d, "new" + std::to_string(i), 1000 + i).ok());
  for (auto& [c, e] : list_all(d)) {
    if (e.name.rfind("new", 0) != 0) {
      EXPECT_EQ(c, cookie_of.at(e.name)) << e.name;
    }
  }
}

TEST_F(DirectoryTest, ListingResumesAfterAGivenCookie) {
  Directory d(kDirIno);
  for (int i = 0; i < 300; i++) ASSERT_TRUE(add(d, "e" + std::to_string(i), i + 1).ok());
  Listing all = list_all(d);

  // Read in batches of 17, as readdir does, removing entries between
  // batches: every survivor is seen exactly once, and nothing removed.
  std::set<std::string> removed, seen;
  uint64_t after = 2;
  for (int round = 0;; round++) {
    Listing batch;
    d.list(after, [&](const DirEntry& e, uint64_t c) {
      batch.emplace_back(c, e);
      return batch.size() < 17;
    });
    if (batch.empty()) break;
    for (auto& [c, e] : batch) {
      EXPECT_GT(c, after);
      EXPECT_EQ(removed.count(e.name), 0u) << e.name;
      EXPECT_TRUE(seen.insert(e.name).second) << e.name;
    }
    after = batch.back().first;
    // Remove one entry already listed and one still ahead of the cursor.
    std::string behind = batch.front().second.name;
    ASSERT_TRUE(remove(d, behind).ok());
    auto ahead = std::upper_bound(all.begin(), all.end(), after,
                                  [](uint64_t a, const auto& p) { return a < p.first; });
    for (; ahead != all.end(); ++ahead) {
      if (!removed.count(ahead->second.name)) {
        ASSERT_TRUE(remove(d, ahead->second.name).ok());
        removed.insert(ahead->second.name);
        break;
      }
    }
  }
  EXPECT_EQ(seen.size() + removed.size(), all.size());
  EXPECT_EQ(list_all(d, all.back().first).size(), 0u);
}

// ---- load: decoding never trusts the disk ----

TEST_F(DirectoryTest, LoadAcceptsHandBuiltBlocksAndFullPayloads) {
  auto b0 = raw_block();
  uint32_t pos = put_record(*b0, 0, 10, kTypeReg, "one");
  put_record(*b0, pos, 11, kTypeDir, "two");
  // A block filled to the last byte: 15 records of 265 bytes + one of 57.
  auto b1 = raw_block();
  pos = 0;
  for (int i = 0; i < 15; i++)
    pos = put_record(*b1, pos, 20 + i, kTypeReg, std::to_string(100 + i) + std::string(252, 'f'));
  ASSERT_EQ(kMetaPayload - pos, 57u);
  pos = put_record(*b1, pos, 99, kTypeLnk, std::string(47, 'z'));
  ASSERT_EQ(pos, kMetaPayload);
  auto empty = raw_block();

  auto d = Directory::load(kDirIno, {b0, b1, empty});
  ASSERT_TRUE(d.ok()) << d.error();
  EXPECT_EQ((*d)->size(), 18u);
  EXPECT_EQ((*d)->block_count(), 3u);
  EXPECT_EQ((*d)->lookup("two")->ino, 11u);
  EXPECT_EQ((*d)->lookup("two")->type, kTypeDir);
  EXPECT_EQ((*d)->lookup(std::string(47, 'z'))->ino, 99u);
}

TEST_F(DirectoryTest, RecordsAfterTheTerminatorAreIgnored) {
  auto b = raw_block();
  uint32_t pos = put_record(*b, 0, 10, kTypeReg, "live");
  pos = put_record(*b, pos, 0, kTypeReg, "end");  // ino 0 ends the block
  put_record(*b, pos, 11, kTypeReg, "ghost");
  auto d = Directory::load(kDirIno, {b});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ((*d)->size(), 1u);
  EXPECT_FALSE((*d)->lookup("ghost").has_value());
  EXPECT_FALSE((*d)->lookup("end").has_value());
}

TEST_F(DirectoryTest, AddAfterLoadOverwritesStaleBytesPastTheTerminator) {
  auto b = raw_block();
  uint32_t pos = put_record(*b, 0, 10, kTypeReg, "live");
  put_record(*b, pos + 8, 11, kTypeReg, "ghost");  // garbage after a zero ino
  auto d = Directory::load(kDirIno, {b});
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(add(**d, "x", 12).ok());
  auto fresh = reload(**d);
  EXPECT_EQ(as_map(*fresh), as_map(**d));
  EXPECT_EQ(fresh->size(), 2u);
}

struct Corruption {
  const char* what;
  std::function<void(MetaBuffer&)> damage;
};

TEST_F(DirectoryTest, LoadRejectsCorruptRecordsWithEuclean) {
  const std::vector<Corruption> cases = {
      {"zero name length", [](MetaBuffer& b) { put_record(b, 0, 10, kTypeReg, "", 0); }},
      {"name past payload end",
       [](MetaBuffer& b) { put_record(b, fill_to(b, kMetaPayload - 20), 10, kTypeReg, "abc", 11); }},
      {"header past payload end",
       [](MetaBuffer& b) { put_le64(b.payload() + fill_to(b, kMetaPayload - 9), 10); }},
      {"slash in name", [](MetaBuffer& b) { put_record(b, 0, 10, kTypeReg, "a/b"); }},
      {"NUL in name",
       [](MetaBuffer& b) { put_record(b, 0, 10, kTypeReg, std::string_view("a\0b", 3)); }},
      {"dot", [](MetaBuffer& b) { put_record(b, 0, 10, kTypeDir, "."); }},
      {"dotdot", [](MetaBuffer& b) { put_record(b, 0, 10, kTypeDir, ".."); }},
      {"unknown type", [](MetaBuffer& b) { put_record(b, 0, 10, 200, "a"); }},
      {"duplicate in one block",
       [](MetaBuffer& b) { put_record(b, put_record(b, 0, 10, kTypeReg, "a"), 11, kTypeReg, "a"); }},
  };
  for (const auto& c : cases) {
    auto good = raw_block();
    put_record(*good, 0, 5, kTypeReg, "fine");
    auto bad = raw_block();
    c.damage(*bad);
    auto d = Directory::load(kDirIno, {good, bad});
    EXPECT_EQ(d.error(), EUCLEAN) << c.what;
  }
}

TEST_F(DirectoryTest, LoadRejectsDuplicateNamesAcrossBlocks) {
  auto a = raw_block();
  put_record(*a, 0, 10, kTypeReg, "same");
  auto b = raw_block();
  put_record(*b, 0, 11, kTypeReg, "same");
  EXPECT_EQ(Directory::load(kDirIno, {a, b}).error(), EUCLEAN);
}

TEST_F(DirectoryTest, LoadRejectsBlocksThatAreNotThisDirectorys) {
  EXPECT_EQ(Directory::load(kDirIno, {raw_block(kDirIno + 1)}).error(), EUCLEAN);
  EXPECT_EQ(Directory::load(kDirIno, {raw_block(kDirIno, kMagicExtentLeaf)}).error(), EUCLEAN);
  EXPECT_EQ(Directory::load(kDirIno, {nullptr}).error(), EUCLEAN);
}

TEST_F(DirectoryTest, RandomlyDamagedBlocksNeverCrashLoad) {
  Directory d(kDirIno);
  for (int i = 0; i < 400; i++) ASSERT_TRUE(add(d, "entry-" + std::to_string(i), i + 1).ok());
  std::vector<std::vector<uint8_t>> pristine;
  for (const auto& b : d.blocks()) pristine.emplace_back(b->payload(), b->payload() + kMetaPayload);

  std::mt19937 rng(99);
  int rejected = 0;
  for (int iter = 0; iter < 1500; iter++) {
    std::vector<std::shared_ptr<MetaBuffer>> copies;
    for (const auto& p : pristine) {
      auto c = raw_block();
      std::memcpy(c->payload(), p.data(), kMetaPayload);
      copies.push_back(c);
    }
    for (int k = 0, n = 1 + rng() % 4; k < n; k++) {
      auto& victim = copies[rng() % copies.size()];
      victim->payload()[rng() % kMetaPayload] = uint8_t(rng());
    }
    auto r = Directory::load(kDirIno, copies);
    if (!r.ok()) {
      EXPECT_EQ(r.error(), EUCLEAN);
      rejected++;
    } else {
      // Whatever loads must list consistently.
      EXPECT_EQ(list_all(**r).size(), (*r)->size());
    }
    next_block_ = kFirstDirBlock + 100;  // reuse cache slots; blocks are throwaway
  }
  EXPECT_GT(rejected, 0);
}

// ---- scale ----

TEST_F(DirectoryTest, HundredThousandEntriesStayFast) {
  constexpr int kEntries = 100000;
  auto name = [](int i) { return "file-" + std::to_string(i); };
  Directory d(kDirIno);
  auto grow = grower();
  for (int base = 0; base < kEntries; base += 10000) {
    {
      Handle h = journal_.start();
      for (int i = base; i < base + 10000; i++)
        ASSERT_TRUE(d.add(h, name(i), uint64_t(i) + 1, kTypeReg, grow).ok());
    }
    ASSERT_TRUE(journal_.commit().ok());  // keeps each transaction small
  }
  ASSERT_EQ(d.size(), size_t(kEntries));
  // ~16-byte records: about 250 per block, so blocks are well packed.
  EXPECT_LT(d.block_count(), size_t(kEntries / 200));

  for (int i = 0; i < kEntries; i++) {
    auto e = d.lookup(name(i));
    ASSERT_TRUE(e.has_value()) << i;
    ASSERT_EQ(e->ino, uint64_t(i) + 1);
  }
  EXPECT_FALSE(d.lookup("file-100000").has_value());

  Listing all = list_all(d);
  ASSERT_EQ(all.size(), size_t(kEntries));
  std::vector<bool> seen(kEntries);
  for (size_t i = 0; i < all.size(); i++) {
    if (i > 0) {
      ASSERT_LT(all[i - 1].first, all[i].first);
    }
    uint64_t idx = all[i].second.ino - 1;
    ASSERT_LT(idx, uint64_t(kEntries));
    ASSERT_FALSE(seen[idx]);
    seen[idx] = true;
  }

  for (int base = 0; base < kEntries; base += 10000) {
    {
      Handle h = journal_.start();
      for (int i = base; i < base + 10000; i += 2) ASSERT_TRUE(d.remove(h, name(i)).ok());
    }
    ASSERT_TRUE(journal_.commit().ok());
  }
  EXPECT_EQ(d.size(), size_t(kEntries / 2));
  EXPECT_FALSE(d.lookup(name(0)).has_value());
  EXPECT_TRUE(d.lookup(name(1)).has_value());

  auto fresh = reload(d);
  ASSERT_NE(fresh, nullptr);
  EXPECT_EQ(fresh->size(), size_t(kEntries / 2));
  EXPECT_EQ(list_all(*fresh).size(), size_t(kEntries / 2));
  for (int i = 1; i < kEntries; i += 2) ASSERT_EQ(fresh->lookup(name(i))->ino, uint64_t(i) + 1);
}

}  // namespace
}  // namespace stablefs
