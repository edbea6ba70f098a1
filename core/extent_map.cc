#include "core/extent_map.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "core/base/endian.h"

namespace stablefs {

namespace {

constexpr uint64_t kLogicalLimit = uint64_t(1) << 32;  // logical blocks are u32
// Longest extent kept in memory: an inline entry stores the length in 31 bits.
constexpr uint32_t kMaxExtentLen = kExtentUnwritten - 1;
constexpr uint32_t kRootPointerBytes = kRootPointers * 8;
static_assert(kInlineExtents * kExtentEntrySize <= kInodeRootSize);
static_assert(kRootPointerBytes <= kInodeRootSize);
static_assert(kNodeEntriesOffset + kLeafSpan * kExtentEntrySize <= kMetaPayload,
              "a leaf must hold one extent per block of its span");
static_assert(kNodeEntriesOffset + kIndexFanout * 8 <= kMetaPayload);

// Logical blocks covered by one node of `level` (1 = leaf).
uint64_t span(uint32_t level) { return uint64_t(kLeafSpan) << (8 * (level - 1)); }
// Logical blocks reachable from the root of a tree of `depth` >= 1.
uint64_t coverage(uint32_t depth) { return kRootPointers * span(depth); }
static_assert(kMaxMapDepth == 4 && (uint64_t(kRootPointers) * kLeafSpan << 24) >= kLogicalLimit,
              "the deepest tree must cover every u32 logical block");

uint64_t end_of(const Extent& e) { return uint64_t(e.logical) + e.len; }

Error corrupt(uint64_t ino, const std::string& why) {
  std::fprintf(stderr, "stablefs: inode %llu: extent map is corrupt: %s\n",
               (unsigned long long)ino, why.c_str());
  return err(EUCLEAN);
}

void encode_entry(Encoder& e, const Extent& x) {
  e.u32(x.logical);
  e.u32(x.len | (x.unwritten ? kExtentUnwritten : 0));
  e.u64(x.physical);
}

Extent decode_entry(Decoder& d) {
  Extent x;
  x.logical = d.u32();
  uint32_t raw = d.u32();
  x.len = raw & ~kExtentUnwritten;
  x.unwritten = (raw & kExtentUnwritten) != 0;
  x.physical = d.u64();
  return x;
}

// b directly continues a, so one extent can describe both.
bool mergeable(const Extent& a, const Extent& b) {
  return end_of(a) == b.logical && a.physical + a.len == b.physical &&
         a.unwritten == b.unwritten && uint64_t(a.len) + b.len <= kMaxExtentLen;
}

}  // namespace

// ---- Queries ----

std::optional<Extent> ExtentMap::find(uint32_t logical) const {
  auto it = extents_.upper_bound(logical);
  if (it == extents_.begin()) return std::nullopt;
  --it;
  if (end_of(it->second) > logical) return it->second;
  return std::nullopt;
}

std::optional<Extent> ExtentMap::next(uint32_t logical) const {
  if (auto e = find(logical)) return e;
  auto it = extents_.upper_bound(logical);
  if (it == extents_.end()) return std::nullopt;
  return it->second;
}

std::vector<uint64_t> ExtentMap::node_blocks() const {
  std::vector<uint64_t> out;
  out.reserve(nodes_.size());
  for (const auto& [key, block] : nodes_) out.push_back(block);
  return out;
}

uint64_t ExtentMap::mapped_blocks() const {
  uint64_t n = 0;
  for (const auto& [l, e] : extents_) n += e.len;
  return n;
}

// ---- In-memory editing ----

std::vector<Extent> ExtentMap::extents_touching(uint64_t lo, uint64_t hi) const {
  std::vector<Extent> out;
  if (lo >= hi || lo >= kLogicalLimit) return out;
  auto it = extents_.upper_bound(uint32_t(lo));
  if (it != extents_.begin() && end_of(std::prev(it)->second) > lo) --it;
  for (; it != extents_.end() && it->first < hi; ++it) out.push_back(it->second);
  return out;
}

// The edit split the saved extents and may have merged them with each
// other, so its pieces lie anywhere in the span the saved extents cover,
// which can reach past [lo, hi) on both sides (a punch in the middle of one
// extent leaves a head before lo and a tail after hi). Everything in that
// whole span is dropped before the saved extents go back.
void ExtentMap::restore(uint64_t lo, uint64_t hi, const std::vector<Extent>& saved) {
  if (!saved.empty()) {
    lo = std::min<uint64_t>(lo, saved.front().logical);
    hi = std::max(hi, end_of(saved.back()));
  }
  for (const Extent& e : extents_touching(lo, hi)) extents_.erase(e.logical);
  for (const Extent& e : saved) extents_[e.logical] = e;
}

void ExtentMap::split_at(uint64_t at) {
  if (at == 0 || at >= kLogicalLimit) return;
  auto it = extents_.upper_bound(uint32_t(at));
  if (it == extents_.begin()) return;
  Extent& e = std::prev(it)->second;
  if (e.logical >= at || end_of(e) <= at) return;
  uint32_t head = uint32_t(at - e.logical);
  Extent tail{uint32_t(at), e.len - head, e.physical + head, e.unwritten};
  e.len = head;
  extents_.emplace(tail.logical, tail);
}

void ExtentMap::remove_range(uint64_t lo, uint64_t hi, std::vector<PhysRange>* replaced) {
  split_at(lo);
  split_at(hi);
  auto it = extents_.lower_bound(uint32_t(lo));
  while (it != extents_.end() && it->first < hi) {
    if (replaced) replaced->push_back({it->second.physical, it->second.len});
    it = extents_.erase(it);
  }
}

void ExtentMap::coalesce(uint64_t lo, uint64_t hi) {
  if (extents_.empty() || lo >= kLogicalLimit) return;
  auto it = extents_.lower_bound(uint32_t(lo));
  if (it != extents_.begin()) --it;
  // Only pairs whose first member starts before hi can have changed.
  while (it != extents_.end() && it->first < hi) {
    auto nx = std::next(it);
    if (nx != extents_.end() && mergeable(it->second, nx->second)) {
      it->second.len += nx->second.len;
      extents_.erase(nx);
    } else {
      it = nx;
    }
  }
}

// ---- Public operations ----
//
// Each edits extents_ first, then sync() rewrites the affected leaves. If
// sync() fails the extents around the edited range are put back, so the
// in-memory map keeps describing what the caller's inode root refers to
// (the caller does not store the root after an error).

Status ExtentMap::map(Handle& h, BufferCache& cache, const NodeAllocator& na, uint32_t logical,
                      uint32_t len, uint64_t physical, bool unwritten,
                      std::vector<PhysRange>* replaced) {
  if (len == 0) return Status::Ok();
  uint64_t lo = logical, hi = lo + len;
  if (hi > kLogicalLimit || physical == 0 || physical + len < physical) return err(EINVAL);
  // Neighbours one block either side may merge with the new extent.
  uint64_t wlo = lo == 0 ? 0 : lo - 1, whi = std::min(hi + 1, kLogicalLimit);
  std::vector<Extent> saved = extents_touching(wlo, whi);
  size_t replaced_before = replaced ? replaced->size() : 0;

  remove_range(lo, hi, replaced);
  for (uint64_t at = lo; at < hi;) {
    uint32_t n = uint32_t(std::min<uint64_t>(hi - at, kMaxExtentLen));
    extents_[uint32_t(at)] = Extent{uint32_t(at), n, physical + (at - lo), unwritten};
    at += n;
  }
  coalesce(lo, hi);
  Status s = sync(h, cache, na, lo, hi);
  if (!s.ok()) {
    restore(wlo, whi, saved);
    if (replaced) replaced->resize(replaced_before);
  }
  return s;
}

Status ExtentMap::unmap(Handle& h, BufferCache& cache, const NodeAllocator& na, uint32_t logical,
                        uint64_t len, std::vector<PhysRange>* replaced) {
  uint64_t lo = logical;
  uint64_t hi = len >= kLogicalLimit - lo ? kLogicalLimit : lo + len;
  if (lo >= hi) return Status::Ok();
  std::vector<Extent> saved = extents_touching(lo, hi);
  if (saved.empty()) return Status::Ok();
  size_t replaced_before = replaced ? replaced->size() : 0;
  remove_range(lo, hi, replaced);
  Status s = sync(h, cache, na, lo, hi);
  if (!s.ok()) {
    restore(lo, hi, saved);
    if (replaced) replaced->resize(replaced_before);
  }
  return s;
}

Status ExtentMap::mark_written(Handle& h, BufferCache& cache, const NodeAllocator& na,
                               uint32_t logical, uint32_t len) {
  uint64_t lo = logical, hi = std::min(lo + len, kLogicalLimit);
  if (lo >= hi) return Status::Ok();
  uint64_t wlo = lo == 0 ? 0 : lo - 1, whi = std::min(hi + 1, kLogicalLimit);
  std::vector<Extent> saved = extents_touching(wlo, whi);
  bool any = std::any_of(saved.begin(), saved.end(), [&](const Extent& e) {
    return e.unwritten && e.logical < hi && end_of(e) > lo;
  });
  if (!any) return Status::Ok();
  split_at(lo);
  split_at(hi);
  for (auto it = extents_.lower_bound(uint32_t(lo)); it != extents_.end() && it->first < hi; ++it)
    it->second.unwritten = false;
  coalesce(lo, hi);
  Status s = sync(h, cache, na, lo, hi);
  if (!s.ok()) restore(wlo, whi, saved);
  return s;
}

void ExtentMap::store_root(DiskInode& inode) const {
  inode.map_depth = depth_;
  inode.root.fill(0);
  Encoder e(inode.root.data(), inode.root.size());
  if (depth_ == 0) {
    // sync() keeps the map inline only while it fits.
    inode.inline_count = uint8_t(extents_.size());
    for (const auto& [l, x] : extents_) encode_entry(e, x);
    return;
  }
  inode.inline_count = 0;
  for (uint64_t i = 0; i < kRootPointers; i++) {
    auto it = nodes_.find({depth_, i});
    e.u64(it == nodes_.end() ? 0 : it->second);
  }
}

// ---- On-disk tree ----

std::vector<Extent> ExtentMap::leaf_entries(uint64_t k) const {
  uint64_t s = k * kLeafSpan, t = s + kLeafSpan;
  std::vector<Extent> out;
  for (Extent e : extents_touching(s, t)) {
    uint64_t a = std::max<uint64_t>(s, e.logical), b = std::min(t, end_of(e));
    Extent piece{uint32_t(a), uint32_t(b - a), e.physical + (a - e.logical), e.unwritten};
    // Extents split in memory only by the length cap are one entry here.
    if (!out.empty() && mergeable(out.back(), piece))
      out.back().len += piece.len;
    else
      out.push_back(piece);
  }
  return out;
}

std::vector<Extent> ExtentMap::edited_leaf_entries(uint64_t k, uint64_t lo, uint64_t hi,
                                                   const uint8_t* payload) const {
  uint64_t s = k * kLeafSpan, t = s + kLeafSpan;
  Decoder d(payload, kMetaPayload);
  uint16_t count = 0;
  if (d.u64() == s) count = d.u16();
  if (count > kLeafSpan) return leaf_entries(k);  // not ours to trust: rebuild
  d.skip(kNodeEntriesOffset - d.pos());
  std::vector<Extent> old(count);
  for (Extent& e : old) e = decode_entry(d);

  // Entries can change where the mapping changed and one block either side
  // (a neighbour may now merge or split); widen that to whole old entries,
  // recompute it from extents_, and let append() merge at the seams.
  uint64_t a = std::max(s, lo == 0 ? 0 : lo - 1), b = std::min(t, hi + 1);
  for (const Extent& e : old)
    if (e.logical < b && end_of(e) > a) {
      a = std::min<uint64_t>(a, e.logical);
      b = std::max(b, end_of(e));
    }
  std::vector<Extent> out;
  out.reserve(old.size() + 2);
  auto append = [&](const Extent& x) {
    if (!out.empty() && mergeable(out.back(), x)) out.back().len += x.len;
    else out.push_back(x);
  };
  size_t i = 0;
  for (; i < old.size() && end_of(old[i]) <= a; i++) append(old[i]);
  for (Extent e : extents_touching(a, b)) {
    uint64_t x = std::max(a, uint64_t(e.logical)), y = std::min(b, end_of(e));
    append(Extent{uint32_t(x), uint32_t(y - x), e.physical + (x - e.logical), e.unwritten});
  }
  while (i < old.size() && old[i].logical < b) i++;
  for (; i < old.size(); i++) append(old[i]);
  return out;
}

// Leaves whose contents may differ from the disk after an edit of [lo, hi):
// those existing there (they may empty) and those extents now need.
std::set<uint64_t> ExtentMap::leaves_touching(uint64_t lo, uint64_t hi) const {
  std::set<uint64_t> leaves;
  uint64_t klo = lo / kLeafSpan, khi = (hi - 1) / kLeafSpan + 1;
  for (auto it = nodes_.lower_bound({1, klo}); it != nodes_.end(); ++it) {
    if (it->first.first != 1 || it->first.second >= khi) break;
    leaves.insert(it->first.second);
  }
  for (const Extent& e : extents_touching(lo, hi)) {
    uint64_t a = std::max<uint64_t>(lo, e.logical), b = std::min(hi, end_of(e));
    for (uint64_t k = a / kLeafSpan; k <= (b - 1) / kLeafSpan; k++) leaves.insert(k);
  }
  return leaves;
}

Status ExtentMap::write_leaf(Handle& h, MetaBuffer& buf, uint64_t k,
                             const std::vector<Extent>& entries) {
  SFS_TRY(h.get_write_access(buf));
  std::memset(buf.payload(), 0, kMetaPayload);
  Encoder e(buf.payload(), kMetaPayload);
  e.u64(k * kLeafSpan);
  e.u16(uint16_t(entries.size()));
  e.skip(kNodeEntriesOffset - e.pos());
  for (const Extent& x : entries) encode_entry(e, x);
  h.dirty_metadata(buf);
  return Status::Ok();
}

Status ExtentMap::write_index(Handle& h, MetaBuffer& buf, NodeKey key) {
  auto [level, j] = key;
  SFS_TRY(h.get_write_access(buf));
  std::memset(buf.payload(), 0, kMetaPayload);
  Encoder e(buf.payload(), kMetaPayload);
  e.u64(j * span(level));
  e.u32(level);
  e.skip(kNodeEntriesOffset - e.pos());
  for (uint64_t i = 0; i < kIndexFanout; i++) {
    auto it = nodes_.find({level - 1, j * kIndexFanout + i});
    e.u64(it == nodes_.end() ? 0 : it->second);
  }
  h.dirty_metadata(buf);
  return Status::Ok();
}

// Two phases. Planning allocates every node the new shape needs before any
// byte changes, so ENOSPC leaves disk and journal untouched. Applying then
// rewrites the leaves in [lo, hi) and, bottom-up, every index node whose
// child pointers changed. A leaf left empty is freed (na.free must revoke
// it and forget its buffer), and so is an index node left without children.
Status ExtentMap::sync(Handle& h, BufferCache& cache, const NodeAllocator& na, uint64_t lo,
                       uint64_t hi) {
  if (depth_ == 0 && extents_.size() <= kInlineExtents) return Status::Ok();
  uint32_t depth = depth_;
  if (depth == 0) {
    depth = 1;
    lo = 0;  // leaving the inline form: every extent needs its leaf
    hi = kLogicalLimit;
  }
  uint64_t max_end = extents_.empty() ? 0 : end_of(extents_.rbegin()->second);
  while (coverage(depth) < max_end) depth++;

  std::set<uint64_t> leaves = leaves_touching(lo, hi);

  // Plan: which nodes must exist that do not yet.
  std::set<NodeKey> needed;
  if (depth_ >= 1 && depth > depth_ && !nodes_.empty()) {
    // The old root's children hang under index node 0 of each new level.
    for (uint32_t l = depth_ + 1; l <= depth; l++) needed.insert({l, 0});
  }
  std::map<uint64_t, std::vector<Extent>> contents;
  for (uint64_t k : leaves) {
    std::vector<Extent> entries;
    auto node = nodes_.find({1, k});
    if (node != nodes_.end() && !(lo <= k * kLeafSpan && hi >= (k + 1) * kLeafSpan)) {
      // Read here, in the planning phase, so applying cannot fail on it.
      auto r = cache.read(node->second, kMagicExtentLeaf);
      if (!r.ok()) return Error{r.error()};
      entries = edited_leaf_entries(k, lo, hi, (*r)->payload());
    } else {
      entries = leaf_entries(k);
    }
    if (!entries.empty()) {
      for (uint32_t l = 1; l <= depth; l++) {
        NodeKey key{l, k >> (8 * (l - 1))};
        if (!nodes_.count(key)) needed.insert(key);
      }
    }
    contents.emplace(k, std::move(entries));
  }
  std::map<NodeKey, uint64_t> fresh;
  for (const NodeKey& key : needed) {
    auto b = na.alloc(h);
    if (!b.ok()) {
      for (const auto& [k, block] : fresh) (void)na.free(h, block);
      return Error{b.error()};
    }
    fresh[key] = *b;
  }

  // Apply.
  std::map<NodeKey, std::shared_ptr<MetaBuffer>> created;
  std::set<NodeKey> dirty_index;
  auto touch_parent = [&](NodeKey key) {
    if (key.first < depth) dirty_index.insert({key.first + 1, key.second / kIndexFanout});
  };
  for (const auto& [key, block] : fresh) {
    created[key] = cache.create(block, key.first == 1 ? kMagicExtentLeaf : kMagicExtentIndex, ino_);
    nodes_[key] = block;
    if (key.first > 1) dirty_index.insert(key);
    touch_parent(key);
  }
  depth_ = uint8_t(depth);
  for (const auto& [k, entries] : contents) {
    NodeKey key{1, k};
    auto node = nodes_.find(key);
    if (entries.empty()) {
      if (node == nodes_.end()) continue;
      SFS_TRY(na.free(h, node->second));
      nodes_.erase(node);
      touch_parent(key);
      continue;
    }
    std::shared_ptr<MetaBuffer> buf;
    if (auto c = created.find(key); c != created.end()) {
      buf = c->second;
    } else {
      auto r = cache.read(node->second, kMagicExtentLeaf);
      if (!r.ok()) return Error{r.error()};
      buf = *r;
    }
    SFS_TRY(write_leaf(h, *buf, k, entries));
  }
  // Ascending (level, index) order visits children before parents, and
  // parents inserted meanwhile sort after the current position.
  for (auto it = dirty_index.begin(); it != dirty_index.end(); ++it) {
    NodeKey key = *it;
    auto node = nodes_.find(key);
    if (node == nodes_.end()) continue;
    uint32_t child = key.first - 1;
    auto c = nodes_.lower_bound({child, key.second * kIndexFanout});
    bool has_children = c != nodes_.end() && c->first.first == child &&
                        c->first.second < (key.second + 1) * kIndexFanout;
    if (!has_children) {
      SFS_TRY(na.free(h, node->second));
      nodes_.erase(node);
      touch_parent(key);
      continue;
    }
    std::shared_ptr<MetaBuffer> buf;
    if (auto cr = created.find(key); cr != created.end()) {
      buf = cr->second;
    } else {
      auto r = cache.read(node->second, kMagicExtentIndex);
      if (!r.ok()) return Error{r.error()};
      buf = *r;
    }
    SFS_TRY(write_index(h, *buf, key));
  }
  return Status::Ok();
}

// ---- Loading ----

Result<std::unique_ptr<ExtentMap>> ExtentMap::load(BufferCache& cache, uint64_t ino,
                                                   const DiskInode& inode,
                                                   uint64_t device_blocks) {
  auto m = std::make_unique<ExtentMap>(ino);
  if (inode.map_depth > kMaxMapDepth)
    return corrupt(ino, "depth " + std::to_string(inode.map_depth));
  Decoder d(inode.root.data(), inode.root.size());
  if (inode.map_depth == 0) {
    if (inode.inline_count > kInlineExtents)
      return corrupt(ino, "inline count " + std::to_string(inode.inline_count));
    for (uint32_t i = 0; i < inode.inline_count; i++) SFS_TRY(m->add_loaded(decode_entry(d), device_blocks));
    return m;
  }
  if (inode.inline_count != 0) return corrupt(ino, "inline count set in a tree root");
  std::set<uint64_t> seen;
  for (uint64_t i = 0; i < kRootPointers; i++) {
    uint64_t p = d.u64();
    if (p != 0) SFS_TRY(m->load_node(cache, {inode.map_depth, i}, p, device_blocks, seen));
  }
  m->depth_ = inode.map_depth;
  return m;
}

Status ExtentMap::load_node(BufferCache& cache, NodeKey key, uint64_t block,
                            uint64_t device_blocks, std::set<uint64_t>& seen) {
  auto [level, j] = key;
  uint64_t start = j * span(level);
  std::string where = "node " + std::to_string(block) + " (level " + std::to_string(level) + ")";
  if (block == 0 || block >= device_blocks)
    return corrupt(ino_, "pointer to block " + std::to_string(block));
  if (!seen.insert(block).second) return corrupt(ino_, where + " referenced twice");
  if (start >= kLogicalLimit) return corrupt(ino_, where + " lies past the last logical block");
  auto r = cache.read(block, level == 1 ? kMagicExtentLeaf : kMagicExtentIndex);
  if (!r.ok()) return Error{r.error()};
  const MetaBuffer& buf = **r;
  if (decode_meta_header(buf.data()).owner != ino_) return corrupt(ino_, where + ": wrong owner");
  Decoder d(buf.payload(), kMetaPayload);
  if (d.u64() != start) return corrupt(ino_, where + ": wrong first logical block");
  if (level == 1) {
    uint16_t count = d.u16();
    if (count > kLeafSpan) return corrupt(ino_, where + ": count " + std::to_string(count));
    d.skip(kNodeEntriesOffset - d.pos());
    for (uint32_t i = 0; i < count; i++) {
      Extent e = decode_entry(d);
      if (e.logical < start || end_of(e) > start + kLeafSpan)
        return corrupt(ino_, where + ": extent outside the leaf's span");
      SFS_TRY(add_loaded(e, device_blocks));
    }
  } else {
    if (d.u32() != level) return corrupt(ino_, where + ": wrong level");
    d.skip(kNodeEntriesOffset - d.pos());
    for (uint64_t i = 0; i < kIndexFanout; i++) {
      uint64_t p = d.u64();
      if (p == 0) continue;
      SFS_TRY(load_node(cache, {level - 1, j * kIndexFanout + i}, p, device_blocks, seen));
    }
  }
  nodes_[key] = block;
  return Status::Ok();
}

// Extents arrive in logical order (inline order, or a depth-first walk of
// the tree), so sortedness and overlap are checked against the last one.
Status ExtentMap::add_loaded(const Extent& e, uint64_t device_blocks) {
  if (e.len == 0) return corrupt(ino_, "empty extent at " + std::to_string(e.logical));
  if (end_of(e) > kLogicalLimit) return corrupt(ino_, "extent past the last logical block");
  if (e.physical == 0 || e.physical >= device_blocks || e.len > device_blocks - e.physical)
    return corrupt(ino_, "extent at " + std::to_string(e.logical) + " points outside the device");
  if (!extents_.empty()) {
    Extent& last = extents_.rbegin()->second;
    if (end_of(last) > e.logical)
      return corrupt(ino_, "extents overlap or are unsorted at " + std::to_string(e.logical));
    if (mergeable(last, e)) {
      last.len += e.len;
      return Status::Ok();
    }
  }
  extents_.emplace(e.logical, e);
  return Status::Ok();
}

}  // namespace stablefs
