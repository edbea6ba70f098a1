// Extent-map decoding (ExtentMap::load, core/extent_map.cc): a fuzzed
// inode root (depth, inline count, root area) over up to 8 fuzzed tree
// nodes. When a map is accepted its extents must be sorted, disjoint and
// inside the device, and a fuzzer-chosen run of map/unmap/mark_written
// must leave a tree that loads again to exactly the same extents.
//
// Input: u8 depth | u8 inline count | 144 root bytes | u8 node count |
// per node: u8 kind (bit 0: index node; bit 1: owned by another inode),
// u16 payload length, payload bytes | operations: u8 op, u32 logical,
// u16 length, u16 physical.
// Node i lives at block 140 + i, so root pointers 140..147 reach them.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "core/base/endian.h"
#include "core/base/format.h"
#include "core/extent_map.h"
#include "core/io/mem_device.h"
#include "fuzz/fuzz_check.h"
#include "fuzz/fuzz_input.h"
#include "journal/buffer.h"
#include "journal/journal.h"

using namespace stablefs;

namespace {

constexpr uint64_t kIno = 7;
// The map is validated against a large device (data extents anywhere in
// it); its tree nodes live on a small in-memory one, so each input costs
// one 1 MiB device.
constexpr uint64_t kDeviceBlocks = 1 << 20;
constexpr uint64_t kNodeDeviceBlocks = 256;
constexpr JournalGeometry kLog{2, 128};
constexpr uint64_t kFirstNode = 140;
constexpr uint64_t kFirstNewNode = 150;  // nodes the map allocates itself

std::vector<Extent> all(const ExtentMap& m) {
  std::vector<Extent> v;
  uint64_t end = 0, sum = 0;
  for (const auto& [l, e] : m.extents()) {
    FUZZ_CHECK(l == e.logical && e.len > 0);
    FUZZ_CHECK(e.logical >= end);  // sorted, disjoint
    end = uint64_t(e.logical) + e.len;
    FUZZ_CHECK(end <= (uint64_t(1) << 32));
    FUZZ_CHECK(e.physical != 0 && e.physical + e.len <= kDeviceBlocks);
    auto f = m.find(e.logical + e.len - 1);
    FUZZ_CHECK(f && *f == e);
    sum += e.len;
    v.push_back(e);
  }
  FUZZ_CHECK(sum == m.mapped_blocks());
  return v;
}

// SFS_FUZZ_TRACE=1 prints every operation and the map after it, for
// reading a crash input by hand (the fuzzer itself stays quiet).
const bool kTrace = std::getenv("SFS_FUZZ_TRACE") != nullptr;

void trace_map(const ExtentMap& m) {
  if (!kTrace) return;
  for (const auto& [l, e] : m.extents())
    std::fprintf(stderr, "  [%u +%u) -> %llu%s\n", e.logical, e.len,
                 (unsigned long long)e.physical, e.unwritten ? " unwritten" : "");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  DiskInode inode;
  inode.map_depth = in.u8() % 6;
  inode.inline_count = in.u8() % 11;
  in.take(inode.root.data(), inode.root.size());

  MemDevice dev(kNodeDeviceBlocks);
  const size_t nodes = in.u8() % 9;
  for (size_t i = 0; i < nodes; i++) {
    uint8_t kind = in.u8();
    AlignedBlock b;
    std::memset(b.data(), 0, kBlockSize);
    MetaHeader h;
    h.magic = kind & 1 ? kMagicExtentIndex : kMagicExtentLeaf;
    h.owner = kind & 2 ? kIno + 1 : kIno;
    encode_meta_header(b.data(), h);
    in.take(b.data() + kMetaHeaderSize, std::min<size_t>(in.u16(), kMetaPayload));
    seal_meta_block(b.data(), kFirstNode + i, 1);
    (void)dev.write(kFirstNode + i, b.data(), kBlockSize);
  }
  (void)dev.flush();

  auto cache = std::make_unique<BufferCache>(dev);
  auto loaded = ExtentMap::load(*cache, kIno, inode, kDeviceBlocks);
  if (!loaded.ok()) {
    FUZZ_CHECK(loaded.error() == EUCLEAN || loaded.error() == EIO ||
               loaded.error() == EINVAL);
    return 0;
  }
  ExtentMap& m = **loaded;
  if (kTrace) std::fprintf(stderr, "loaded (depth %u):\n", unsigned(inode.map_depth));
  trace_map(m);
  all(m);

  std::set<uint64_t> nodes_live;
  for (uint64_t b : m.node_blocks()) FUZZ_CHECK(nodes_live.insert(b).second);
  uint64_t next_node = kFirstNewNode;
  NodeAllocator na;
  na.alloc = [&](Handle&) -> Result<uint64_t> {
    if (next_node >= kNodeDeviceBlocks) return err(ENOSPC);
    FUZZ_CHECK(nodes_live.insert(next_node).second);
    return next_node++;
  };
  JournalOptions jo;
  jo.commit_interval = std::chrono::hours(1);
  jo.persist_tail = [](JournalPosition) { return Status::Ok(); };
  auto journal = std::make_unique<Journal>(dev, *cache, kLog, JournalPosition{0, 1}, jo);
  na.free = [&](Handle& h, uint64_t b) -> Status {
    FUZZ_CHECK(nodes_live.erase(b) == 1);
    h.revoke(b);
    cache->forget(b);
    return Status::Ok();
  };
  for (int ops = 0; ops < 32 && !in.done(); ops++) {
    uint8_t op = in.u8();
    uint32_t logical = in.u32();
    uint32_t len = in.u16();
    uint64_t phys = 1 + in.u16() * 8;
    Handle h = journal->start();
    std::vector<PhysRange> replaced;
    Status s;
    switch (op % 3) {
      case 0:
        s = m.map(h, *cache, na, logical, len, phys, op & 8, &replaced);
        break;
      case 1:
        s = m.unmap(h, *cache, na, logical, len, &replaced);
        break;
      case 2:
        s = m.mark_written(h, *cache, na, logical, len);
        break;
    }
    if (s.ok()) m.store_root(inode);
    if (kTrace)
      std::fprintf(stderr, "%s(%u, %u%s%s) -> %s\n",
                   op % 3 == 0 ? "map" : op % 3 == 1 ? "unmap" : "mark_written", logical, len,
                   op % 3 == 0 ? (", " + std::to_string(phys)).c_str() : "",
                   op % 3 == 0 && (op & 8) ? ", unwritten" : "",
                   s.ok() ? "ok" : std::strerror(s.error()));
    trace_map(m);
    all(m);
  }
  std::vector<Extent> expect = all(m);
  Status done = journal->shutdown();
  if (!done.ok()) {
    // One handle dirtied more nodes than the log holds (a mapping of
    // thousands of blocks in one call): the journal refuses the
    // transaction and aborts, by design. Nothing was checkpointed, so
    // there is nothing to reload.
    FUZZ_CHECK(done.error() == EIO);
    return 0;
  }
  journal.reset();
  // Reload from the device alone: a fresh cache reads every node back.
  cache = std::make_unique<BufferCache>(dev);
  auto again = ExtentMap::load(*cache, kIno, inode, kDeviceBlocks);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(all(**again) == expect);
  return 0;
}
