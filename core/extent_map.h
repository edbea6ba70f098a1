// A file's logical-to-physical block map: extents in memory, a fixed-span
// radix tree of extent leaves on disk (see core/base/format.h and
// docs/FORMAT.md). Used for file data and for directory blocks.
//
// Not thread-safe: the owner (the inode) serialises access.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <vector>

#include "core/base/format.h"
#include "core/base/result.h"
#include "journal/buffer.h"
#include "journal/journal.h"

namespace stablefs {

struct Extent {
  uint32_t logical = 0;
  uint32_t len = 0;
  uint64_t physical = 0;
  bool unwritten = false;  // allocated but reads as zeros (fallocate)
  bool operator==(const Extent&) const = default;
};

struct PhysRange {
  uint64_t start = 0;
  uint64_t count = 0;
};

// How the map gets and returns blocks for its own tree nodes. free() is
// called for a node left empty, after the map has dropped every pointer to
// it: it must h.revoke() the block and forget its cached buffer (so neither
// checkpoint nor replay writes the stale node over the block's next use),
// and must not make the block reusable before the transaction is durable.
struct NodeAllocator {
  std::function<Result<uint64_t>(Handle&)> alloc;       // one metadata block
  std::function<Status(Handle&, uint64_t)> free;        // deferred free
};

class ExtentMap {
 public:
  explicit ExtentMap(uint64_t ino) : ino_(ino) {}
  // Loads the map described by the inode's root, reading and verifying
  // every tree node. EUCLEAN on any inconsistency (bad pointer, overlapping
  // or out-of-span extents, wrong owner).
  static Result<std::unique_ptr<ExtentMap>> load(BufferCache& cache, uint64_t ino,
                                                 const DiskInode& inode,
                                                 uint64_t device_blocks);

  // The extent containing `logical`, or nullopt for a hole.
  std::optional<Extent> find(uint32_t logical) const;
  // The first extent that ends after `logical` (for SEEK_DATA/SEEK_HOLE).
  std::optional<Extent> next(uint32_t logical) const;
  const std::map<uint32_t, Extent>& extents() const { return extents_; }

  // Maps [logical, logical+len) to [physical, physical+len), replacing what
  // was mapped there. Ranges that were mapped before are appended to
  // *replaced so the caller can free them. Tree nodes are allocated and
  // journalled through h. EINVAL if the range passes logical 2^32 or
  // physical is 0. On an error before any node changed (ENOSPC from
  // na.alloc in particular) the map and *replaced are left as they were;
  // that holds for unmap() and mark_written() too.
  Status map(Handle& h, BufferCache& cache, const NodeAllocator& na, uint32_t logical,
             uint32_t len, uint64_t physical, bool unwritten, std::vector<PhysRange>* replaced);
  // Removes every mapping in [logical, logical+len); freed ranges appended.
  // len may run past the last logical block (truncate): it is clamped.
  Status unmap(Handle& h, BufferCache& cache, const NodeAllocator& na, uint32_t logical,
               uint64_t len, std::vector<PhysRange>* replaced);
  // Clears the unwritten flag on [logical, logical+len) (after data is written).
  Status mark_written(Handle& h, BufferCache& cache, const NodeAllocator& na,
                      uint32_t logical, uint32_t len);

  // Writes depth, inline count and root area into the inode record. Call
  // after every change, inside the same handle, and journal the inode.
  void store_root(DiskInode& inode) const;
  // Every tree node block (for fsck and for freeing on delete).
  std::vector<uint64_t> node_blocks() const;
  uint64_t mapped_blocks() const;

  // Current tree depth (0 = extents inline in the inode root).
  uint8_t depth() const { return depth_; }

 private:
  // A tree node is named by its level (1 = leaf) and its index j at that
  // level: it covers logical [j * span(level), (j + 1) * span(level)). The
  // name does not depend on the tree depth, so growing the tree only adds
  // nodes (the old root's children become children of index node j = 0).
  using NodeKey = std::pair<uint32_t, uint64_t>;

  // Removes [lo, hi) from extents_, appending the dropped physical ranges.
  void remove_range(uint64_t lo, uint64_t hi, std::vector<PhysRange>* replaced);
  // Merges physically contiguous neighbours of equal state around [lo, hi).
  void coalesce(uint64_t lo, uint64_t hi);
  // Splits the extent containing `at` (if any) so that `at` starts one.
  void split_at(uint64_t at);
  std::vector<Extent> extents_touching(uint64_t lo, uint64_t hi) const;
  void restore(uint64_t lo, uint64_t hi, const std::vector<Extent>& saved);
  // Brings the on-disk tree in line with extents_ for the leaves that
  // intersect [lo, hi) (all leaves if the map leaves the inline form).
  Status sync(Handle& h, BufferCache& cache, const NodeAllocator& na, uint64_t lo, uint64_t hi);
  std::set<uint64_t> leaves_touching(uint64_t lo, uint64_t hi) const;
  // The leaf's on-disk entries: extents_ clipped to leaf k's span.
  std::vector<Extent> leaf_entries(uint64_t k) const;
  // The same, computed from the leaf's current entries (`payload`, which
  // matched extents_ before an edit of [lo, hi)) by recomputing only the
  // entries the edit can change. A leaf of a fragmented file holds up to
  // kLeafSpan extents, and walking them in the in-memory tree costs a cache
  // miss each; a random rewrite changes one or two of them.
  std::vector<Extent> edited_leaf_entries(uint64_t k, uint64_t lo, uint64_t hi,
                                          const uint8_t* payload) const;
  Status write_leaf(Handle& h, MetaBuffer& buf, uint64_t k, const std::vector<Extent>& entries);
  Status write_index(Handle& h, MetaBuffer& buf, NodeKey key);
  // Reads and validates the subtree at `key`; `seen` catches shared nodes.
  Status load_node(BufferCache& cache, NodeKey key, uint64_t block, uint64_t device_blocks,
                   std::set<uint64_t>& seen);
  // Validates one decoded extent and appends it (merging with the last).
  Status add_loaded(const Extent& e, uint64_t device_blocks);

  uint64_t ino_;
  std::map<uint32_t, Extent> extents_;  // keyed by logical start; merged
  uint8_t depth_ = 0;
  std::map<NodeKey, uint64_t> nodes_;  // every tree node -> its block
  friend class ExtentMapTestPeer;
};

}  // namespace stablefs
