// Directory block decoding (Directory::load, core/directory.cc) and the
// index built from it: up to 4 fuzzed directory blocks are loaded; when
// they are accepted, every listed entry must be found by lookup, and a
// fuzzer-chosen run of add/remove/replace must leave blocks that load
// again to exactly the same entries (what the directory writes, it can
// read back).
//
// Input: u8 flags | u8 block count | per block: u16 payload length, then
// that many payload bytes | operations: u8 op, u8 name length, name bytes,
// u8 ino. flags bit 0: the first block names another owner; bit 1: the
// last block has another magic.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "core/base/format.h"
#include "core/directory.h"
#include "core/io/mem_device.h"
#include "fuzz/fuzz_check.h"
#include "fuzz/fuzz_input.h"
#include "journal/buffer.h"
#include "journal/journal.h"

using namespace stablefs;

namespace {

constexpr uint64_t kIno = 42;
constexpr uint64_t kFirstBlock = 100;  // after the log at 2..66

using Listing = std::map<std::string, std::pair<uint64_t, uint8_t>>;

Listing listing(const Directory& d) {
  Listing out;
  uint64_t last_cookie = 0;
  d.list(0, [&](const DirEntry& e, uint64_t cookie) {
    FUZZ_CHECK(cookie > last_cookie && cookie > 2 && cookie < (uint64_t(1) << 63));
    last_cookie = cookie;
    FUZZ_CHECK(out.emplace(e.name, std::make_pair(e.ino, e.type)).second);
    auto found = d.lookup(e.name);
    FUZZ_CHECK(found && found->ino == e.ino && found->type == e.type);
    return true;
  });
  FUZZ_CHECK(out.size() == d.size());
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint8_t flags = in.u8();
  const size_t nblocks = in.u8() % 5;

  MemDevice dev(256);
  BufferCache cache(dev);
  std::vector<std::shared_ptr<MetaBuffer>> blocks;
  for (size_t i = 0; i < nblocks; i++) {
    uint64_t owner = (i == 0 && (flags & 1)) ? kIno + 1 : kIno;
    uint32_t magic = (i + 1 == nblocks && (flags & 2)) ? kMagicExtentLeaf : kMagicDirectory;
    auto b = cache.create(kFirstBlock + i, magic, owner);
    std::string payload = in.bytes(std::min<size_t>(in.u16(), kMetaPayload));
    std::memcpy(b->payload(), payload.data(), payload.size());
    blocks.push_back(b);
  }
  auto loaded = Directory::load(kIno, blocks);
  if (!loaded.ok()) {
    FUZZ_CHECK(loaded.error() == EUCLEAN);
    return 0;
  }
  Directory& d = **loaded;
  Listing expect = listing(d);

  JournalOptions jo;
  jo.commit_interval = std::chrono::hours(1);
  jo.persist_tail = [](JournalPosition) { return Status::Ok(); };
  Journal journal(dev, cache, JournalGeometry{2, 64}, JournalPosition{0, 1}, jo);
  uint64_t next_block = kFirstBlock + nblocks;
  auto grow = [&](Handle&) -> Result<std::shared_ptr<MetaBuffer>> {
    if (next_block >= dev.block_count()) return err(ENOSPC);
    return cache.create(next_block++, kMagicDirectory, kIno);
  };
  for (int ops = 0; ops < 64 && !in.done(); ops++) {
    uint8_t op = in.u8();
    std::string name = in.bytes(in.u8());
    uint64_t ino = 1 + in.u8();
    Handle h = journal.start();
    Status s;
    switch (op % 3) {
      case 0:
        s = d.add(h, name, ino, kTypeReg, grow);
        if (s.ok()) FUZZ_CHECK(expect.emplace(name, std::make_pair(ino, uint8_t(kTypeReg))).second);
        break;
      case 1:
        s = d.remove(h, name);
        if (s.ok()) FUZZ_CHECK(expect.erase(name) == 1);
        break;
      case 2:
        s = d.replace(h, name, ino, kTypeDir);
        if (s.ok()) expect[name] = {ino, uint8_t(kTypeDir)};
        break;
    }
    if (!s.ok()) FUZZ_CHECK(s.error() != EUCLEAN || op % 3 != 0);
  }
  FUZZ_CHECK(listing(d) == expect);
  auto again = Directory::load(kIno, d.blocks());
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(listing(**again) == expect);
  (void)journal.shutdown();
  return 0;
}
