// Loading, storing and freeing an inode's xattr blocks (core/xattr_block.h).
//
// Every change happens in the caller's handle, together with the inode
// record that points at the result, so a crash leaves the old set or the
// new one. A store reads and allocates everything it needs before it
// dirties anything: a failure (a corrupt member, ENOSPC) returns with
// nothing changed but the bits of blocks it allocated and freed again.
#include "core/xattr_block.h"

#include <cstring>

#include "core/base/log.h"

namespace stablefs {

namespace {

using BufferRef = std::shared_ptr<MetaBuffer>;

// What an inode's xattr_block points at, read and verified.
struct StoredXattrs {
  uint64_t block = 0;      // 0: no xattrs
  BufferRef buf;           // the XATR block, or the index
  bool indexed = false;    // buf is an XIDX index
  XattrIndex index;        // indexed: the members
  // The blocks charged to the inode for it.
  uint64_t charged() const { return block == 0 ? 0 : 1 + index.members.size(); }
};

Error corrupt(uint64_t ino, uint64_t block, const std::string& why) {
  SFS_LOG("inode %llu: xattr block %llu is corrupt: %s", (unsigned long long)ino,
          (unsigned long long)block, why.c_str());
  return Error{EUCLEAN};
}

// Block b of inode ino, with one of `magics`. The cache verifies a block
// when it reads it, but a hit is not checked against a magic: checked here,
// with the owner, so a pointer to someone else's block is never followed.
Result<BufferRef> read_xattr_block(BufferCache& cache, uint64_t ino, uint64_t b,
                                   std::initializer_list<uint32_t> magics) {
  auto buf = cache.read(b, magics.size() == 1 ? *magics.begin() : 0);
  if (!buf.ok()) return Error{buf.error()};
  const MetaHeader hdr = decode_meta_header((*buf)->data());
  if (hdr.owner != ino) return corrupt(ino, b, "it belongs to inode " + std::to_string(hdr.owner));
  for (uint32_t m : magics)
    if (hdr.magic == m) return *buf;
  return corrupt(ino, b, "not an xattr block of the expected kind");
}

Result<StoredXattrs> read_stored(BufferCache& cache, uint64_t ino, uint64_t block) {
  StoredXattrs s;
  s.block = block;
  if (block == 0) return s;
  auto buf = read_xattr_block(cache, ino, block, {kMagicXattr, kMagicXattrIndex});
  if (!buf.ok()) return Error{buf.error()};
  s.buf = *buf;
  if (decode_meta_header(s.buf->data()).magic == kMagicXattrIndex) {
    std::string why;
    auto idx = decode_xattr_index(s.buf->payload(), &why);
    if (!idx.ok()) return corrupt(ino, block, why);
    s.indexed = true;
    s.index = std::move(*idx);
  }
  return s;
}

// The first `count` members of an index.
Result<std::vector<BufferRef>> read_members(BufferCache& cache, uint64_t ino,
                                            const XattrIndex& x, size_t count) {
  std::vector<BufferRef> out;
  for (size_t i = 0; i < count; i++) {
    auto m = read_xattr_block(cache, ino, x.members[i], {kMagicXattrData});
    if (!m.ok()) return Error{m.error()};
    out.push_back(std::move(*m));
  }
  return out;
}

// The set bytes the members of `s` hold, checked against the index's hash.
Result<std::string> read_set(BufferCache& cache, uint64_t ino, const StoredXattrs& s) {
  auto members = read_members(cache, ino, s.index, s.index.members.size());
  if (!members.ok()) return Error{members.error()};
  std::string set(s.index.set_bytes, '\0');
  for (size_t i = 0; i < members->size(); i++) {
    const size_t at = i * kMetaPayload;
    std::memcpy(set.data() + at, (*members)[i]->payload(), std::min<size_t>(kMetaPayload, set.size() - at));
  }
  if (xattr_set_hash(ino, set) != s.index.set_hash)
    return corrupt(ino, s.block, "its members do not hold the set it describes (hash mismatch)");
  return set;
}

Status free_block(Handle& h, const XattrSpace& space, uint64_t b) {
  h.revoke(b);
  space.cache.forget(b);
  return space.alloc.free_blocks(h, {b, 1});
}

// Frees what `s` points at: the index's members, then the block itself.
Status release(Handle& h, const XattrSpace& space, const StoredXattrs& s) {
  for (uint64_t m : s.index.members) SFS_TRY(free_block(h, space, m));
  if (s.block) SFS_TRY(free_block(h, space, s.block));
  return Status::Ok();
}

// `count` blocks, all or none: on failure the ones taken are freed again.
Result<std::vector<uint64_t>> alloc_all(Handle& h, const XattrSpace& space, uint64_t count) {
  std::vector<uint64_t> got;
  while (got.size() < count) {
    auto r = space.alloc.alloc_blocks(h, got.empty() ? 0 : got.back() + 1, count - got.size());
    if (!r.ok()) {
      for (uint64_t b : got) (void)space.alloc.free_blocks(h, {b, 1});
      return Error{r.error()};
    }
    for (uint64_t b = r->start; b < r->start + r->count; b++) got.push_back(b);
  }
  return got;
}

// Writes `bytes` (at most a payload, zero-padded) into buf in h, unless
// `unchanged_if_same` and it holds them already.
Status write_payload(Handle& h, MetaBuffer& buf, std::string_view bytes, bool unchanged_if_same) {
  uint8_t next[kMetaPayload] = {};
  std::memcpy(next, bytes.data(), bytes.size());
  if (unchanged_if_same && std::memcmp(buf.payload(), next, kMetaPayload) == 0)
    return Status::Ok();
  SFS_TRY(h.get_write_access(buf));
  std::memcpy(buf.payload(), next, kMetaPayload);
  h.dirty_metadata(buf);
  return Status::Ok();
}

// The one-block form: the XATR block is rewritten in place; one replaces
// an index (whose blocks are freed).
Status store_one_block(Handle& h, const XattrSpace& space, uint64_t ino, DiskInode& d,
                       const StoredXattrs& s, const XattrMap& xs) {
  BufferRef buf = s.indexed ? nullptr : s.buf;
  if (!buf) {
    auto b = alloc_all(h, space, 1);
    if (!b.ok()) return Error{b.error()};
    buf = space.cache.create(b->front(), kMagicXattr, ino);
  }
  std::string bytes(xattr_encoded_size(xs, XattrLayout::kBlock), '\0');
  encode_xattr_records(xs, XattrLayout::kBlock, reinterpret_cast<uint8_t*>(bytes.data()));
  SFS_TRY(write_payload(h, *buf, bytes, false));
  if (s.indexed) SFS_TRY(release(h, space, s));
  d.xattr_block = buf->blocknr();
  return Status::Ok();
}

// The multi-block form: an index keeps its block and as many members as
// the new set needs, and only members whose bytes change are rewritten.
Status store_indexed(Handle& h, const XattrSpace& space, uint64_t ino, DiskInode& d,
                     const StoredXattrs& s, const XattrMap& xs) {
  const std::string set = encode_xattr_set(xs);
  const size_t want = xattr_members_for(set.size());
  const size_t keep = std::min(want, s.index.members.size());
  auto members = read_members(space.cache, ino, s.index, keep);
  if (!members.ok()) return Error{members.error()};
  auto fresh = alloc_all(h, space, want - keep + (s.indexed ? 0 : 1));
  if (!fresh.ok()) return Error{fresh.error()};
  if (Status st = space.enable_large_xattrs(); !st.ok()) {
    for (uint64_t b : *fresh) (void)space.alloc.free_blocks(h, {b, 1});
    return st;
  }
  // Nothing is dirtied before this point.
  size_t next_fresh = 0;
  BufferRef index = s.indexed ? s.buf
                              : space.cache.create((*fresh)[next_fresh++], kMagicXattrIndex, ino);
  XattrIndex x;
  x.set_bytes = uint32_t(set.size());
  x.set_hash = xattr_set_hash(ino, set);
  for (size_t i = 0; i < want; i++) {
    const bool kept = i < keep;
    BufferRef m = kept ? (*members)[i]
                       : space.cache.create((*fresh)[next_fresh++], kMagicXattrData, ino);
    const size_t at = i * kMetaPayload;
    SFS_TRY(write_payload(h, *m, std::string_view(set).substr(at, kMetaPayload), kept));
    x.members.push_back(m->blocknr());
  }
  SFS_TRY(h.get_write_access(*index));
  encode_xattr_index(x, index->payload());
  h.dirty_metadata(*index);
  for (size_t i = keep; i < s.index.members.size(); i++)
    SFS_TRY(free_block(h, space, s.index.members[i]));
  if (s.block && !s.indexed) SFS_TRY(free_block(h, space, s.block));
  d.xattr_block = index->blocknr();
  return Status::Ok();
}

}  // namespace

Status load_xattrs(BufferCache& cache, Inode& n) {
  if (n.xattrs) return Status::Ok();
  auto s = read_stored(cache, n.ino, n.disk.xattr_block);
  if (!s.ok()) return Error{s.error()};
  Result<XattrMap> xs = XattrMap{};
  if (s->indexed) {
    auto set = read_set(cache, n.ino, *s);
    if (!set.ok()) return Error{set.error()};
    xs = decode_xattr_records(reinterpret_cast<const uint8_t*>(set->data()), set->size(),
                              XattrLayout::kSet);
  } else if (s->buf) {
    xs = decode_xattr_records(s->buf->payload(), kMetaPayload, XattrLayout::kBlock);
  }
  if (!xs.ok()) return corrupt(n.ino, n.disk.xattr_block, "a record is malformed");
  n.xattrs = std::make_unique<XattrMap>(std::move(*xs));
  return Status::Ok();
}

Status store_xattrs(Handle& h, const XattrSpace& space, uint64_t ino, DiskInode& d,
                    const XattrMap& xs) {
  SFS_TRY(check_xattr_set_bounds(xs));
  auto s = read_stored(space.cache, ino, d.xattr_block);
  if (!s.ok()) return Error{s.error()};
  const uint64_t before = s->charged();
  uint64_t after = 0;
  if (xs.empty()) {
    SFS_TRY(release(h, space, *s));
    d.xattr_block = 0;
  } else if (fits_one_xattr_block(xs)) {
    SFS_TRY(store_one_block(h, space, ino, d, *s, xs));
    after = 1;
  } else {
    SFS_TRY(store_indexed(h, space, ino, d, *s, xs));
    after = 1 + xattr_members_for(xattr_encoded_size(xs, XattrLayout::kSet));
  }
  d.blocks = d.blocks - std::min(d.blocks, before) + after;
  return Status::Ok();
}

Status free_xattrs(Handle& h, const XattrSpace& space, uint64_t ino, DiskInode& d) {
  if (!d.xattr_block) return Status::Ok();
  auto s = read_stored(space.cache, ino, d.xattr_block);
  if (!s.ok()) {
    SFS_LOG("inode %llu: its xattr block %llu is freed unread; blocks it may index stay "
            "allocated until fsck.stablefs frees them",
            (unsigned long long)ino, (unsigned long long)d.xattr_block);
    StoredXattrs alone;
    alone.block = d.xattr_block;
    SFS_TRY(release(h, space, alone));
  } else {
    SFS_TRY(release(h, space, *s));
  }
  d.blocks -= std::min(d.blocks, s.ok() ? s->charged() : 1);
  d.xattr_block = 0;
  return Status::Ok();
}

}  // namespace stablefs
