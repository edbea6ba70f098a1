#include "core/directory.h"

#include <algorithm>
#include <cassert>
#include <cstdlib>
#include <cstring>

#include "core/base/checksum.h"
#include "core/base/endian.h"
#include "core/base/format.h"
#include "core/base/log.h"

namespace stablefs {

namespace {

// Cookies live in [2^62, 2^63): never 0, 1 or 2, and still a positive
// off_t, which is what FUSE carries them in.
constexpr uint64_t kCookieBase = uint64_t(1) << 62;
constexpr uint64_t kCookieMask = kCookieBase - 1;
// Smallest record: header plus a one-byte name. A block with less room
// than this can take nothing more.
constexpr uint32_t kMinRecord = kDirRecordHeader + 1;
// Bytes that must be zero after the last record for a reader to stop
// there; fewer remaining bytes mean the payload end terminates instead.
constexpr uint32_t kTerminator = 8;

bool valid_type(uint8_t t) {
  switch (t) {
    case kTypeUnknown: case kTypeFifo: case kTypeChr: case kTypeDir:
    case kTypeBlk: case kTypeReg: case kTypeLnk: case kTypeSock:
      return true;
    default:
      return false;
  }
}

uint32_t record_size(std::string_view name) { return kDirRecordHeader + uint32_t(name.size()); }

}  // namespace

Result<std::unique_ptr<Directory>> Directory::load(
    uint64_t ino, std::vector<std::shared_ptr<MetaBuffer>> blocks) {
  auto d = std::make_unique<Directory>(ino);
  auto corrupt = [&](size_t b, uint32_t pos, const char* why) -> Error {
    SFS_LOG("directory %llu: block %zu, payload offset %u: %s", (unsigned long long)ino, b, pos,
            why);
    return err(EUCLEAN);
  };
  if (blocks.size() > UINT32_MAX) return corrupt(0, 0, "too many blocks");
  d->blocks_.reserve(blocks.size());
  for (size_t b = 0; b < blocks.size(); b++) {
    if (!blocks[b]) return corrupt(b, 0, "missing block");
    MetaHeader hdr = decode_meta_header(blocks[b]->data());
    if (hdr.magic != kMagicDirectory) return corrupt(b, 0, "not a directory block");
    if (hdr.owner != ino) return corrupt(b, 0, "block belongs to another inode");

    Block blk;
    blk.buf = std::move(blocks[b]);
    const uint8_t* p = blk.buf->payload();
    uint32_t pos = 0;
    while (kMetaPayload - pos >= kTerminator) {
      uint64_t rino = get_le64(p + pos);
      if (rino == 0) break;
      if (kMetaPayload - pos < kDirRecordHeader) return corrupt(b, pos, "record header past block end");
      uint8_t type = p[pos + 8];
      uint8_t len = p[pos + 9];
      if (len == 0) return corrupt(b, pos, "empty name");
      if (kMetaPayload - pos - kDirRecordHeader < len) return corrupt(b, pos, "name past block end");
      std::string_view name(reinterpret_cast<const char*>(p + pos + kDirRecordHeader), len);
      if (!check_name(name).ok()) return corrupt(b, pos, "invalid name");
      if (!valid_type(type)) return corrupt(b, pos, "invalid entry type");
      auto [it, inserted] = d->by_name_.try_emplace(std::string(name));
      if (!inserted) return corrupt(b, pos, "duplicate name");
      it->second = Slot{rino, type, uint32_t(b), 0};
      d->index_cookie(*it);
      pos += kDirRecordHeader + len;
    }
    blk.used = pos;
    d->blocks_.push_back(std::move(blk));
    d->note_room(uint32_t(b));
  }
  return d;
}

std::optional<DirEntry> Directory::lookup(std::string_view name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) return std::nullopt;
  return DirEntry{it->first, it->second.ino, it->second.type};
}

std::vector<std::shared_ptr<MetaBuffer>> Directory::blocks() const {
  std::vector<std::shared_ptr<MetaBuffer>> out;
  out.reserve(blocks_.size());
  for (const Block& b : blocks_) out.push_back(b.buf);
  return out;
}

Status Directory::check_name(std::string_view name) {
  if (name.size() > kMaxNameLen) return err(ENAMETOOLONG);
  if (name.empty() || name == "." || name == "..") return err(EINVAL);
  if (name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos)
    return err(EINVAL);
  return Status::Ok();
}

Status Directory::add(Handle& h, std::string_view name, uint64_t ino, uint8_t type,
                      const GrowFn& grow) {
  SFS_TRY(check_name(name));
  // ino 0 would read back as the block terminator.
  if (ino == 0 || !valid_type(type)) return err(EINVAL);
  if (by_name_.find(name) != by_name_.end()) return err(EEXIST);

  uint32_t need = record_size(name);
  auto b = block_with_room(h, need, grow);
  if (!b.ok()) return Error{b.error()};
  Block& blk = blocks_[*b];
  SFS_TRY(h.get_write_access(*blk.buf));

  auto [it, inserted] = by_name_.try_emplace(std::string(name));
  assert(inserted);
  it->second = Slot{ino, type, *b, 0};
  index_cookie(*it);

  uint8_t* p = blk.buf->payload() + blk.used;
  put_le64(p, ino);
  p[8] = type;
  p[9] = uint8_t(name.size());
  std::memcpy(p + kDirRecordHeader, name.data(), name.size());
  forget_room(*b);
  blk.used += need;
  note_room(*b);
  // The bytes past `used` may be stale (a loaded block is only valid up to
  // its terminator), so write a fresh one.
  std::memset(blk.buf->payload() + blk.used, 0, std::min(kTerminator, kMetaPayload - blk.used));
  h.dirty_metadata(*blk.buf);
  return Status::Ok();
}

Status Directory::remove(Handle& h, std::string_view name) {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) return err(ENOENT);
  uint32_t b = it->second.block;
  Block& blk = blocks_[b];
  auto found = find_record(blk, name);
  if (!found) return lost_record(name);
  SFS_TRY(h.get_write_access(*blk.buf));

  // Compact: slide the records after it down over the hole, then zero the
  // freed bytes so the new end reads as a terminator.
  uint8_t* p = blk.buf->payload();
  uint32_t off = *found;
  uint32_t size = record_size(name);
  std::memmove(p + off, p + off + size, blk.used - off - size);
  forget_room(b);
  blk.used -= size;
  note_room(b);
  std::memset(p + blk.used, 0, size);
  by_cookie_.erase(it->second.cookie);
  by_name_.erase(it);
  h.dirty_metadata(*blk.buf);
  return Status::Ok();
}

Status Directory::replace(Handle& h, std::string_view name, uint64_t ino, uint8_t type) {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) return err(ENOENT);
  if (ino == 0 || !valid_type(type)) return err(EINVAL);
  Block& blk = blocks_[it->second.block];
  auto found = find_record(blk, name);
  if (!found) return lost_record(name);
  SFS_TRY(h.get_write_access(*blk.buf));
  it->second.ino = ino;
  it->second.type = type;
  uint8_t* p = blk.buf->payload() + *found;
  put_le64(p, ino);
  p[8] = type;
  h.dirty_metadata(*blk.buf);
  return Status::Ok();
}

void Directory::list(uint64_t after,
                     const std::function<bool(const DirEntry&, uint64_t cookie)>& emit) const {
  for (auto it = by_cookie_.upper_bound(after); it != by_cookie_.end(); ++it) {
    const Node& n = *it->second;
    if (!emit(DirEntry{n.first, n.second.ino, n.second.type}, it->first)) return;
  }
}

uint32_t Directory::free_bytes(uint32_t b) const { return kMetaPayload - blocks_[b].used; }

void Directory::forget_room(uint32_t b) { room_.erase({free_bytes(b), b}); }

void Directory::note_room(uint32_t b) {
  if (free_bytes(b) >= kMinRecord) room_.insert({free_bytes(b), b});
}

Error Directory::lost_record(std::string_view name) const {
  // The index and the payload disagree: a bug or memory corruption, since
  // both were built from validated bytes and change only together.
  SFS_LOG("directory %llu: entry '%.*s' is missing from its block", (unsigned long long)ino_,
          int(name.size()), name.data());
  return err(EIO);
}

void Directory::index_cookie(Node& n) {
  uint64_t c = kCookieBase | (xxh3(n.first.data(), n.first.size()) & kCookieMask);
  // Linear probing: terminates because there are far fewer than 2^62
  // entries. A probed cookie depends on insertion order, which is fine:
  // cookies need only be stable while the entry exists within one mount.
  while (!by_cookie_.try_emplace(c, &n).second) c = kCookieBase | ((c + 1) & kCookieMask);
  n.second.cookie = c;
}

Result<uint32_t> Directory::block_with_room(Handle& h, uint32_t need, const GrowFn& grow) {
  // Best fit: the fullest block that still takes the record.
  auto it = room_.lower_bound({need, 0});
  if (it != room_.end()) return it->second;
  if (blocks_.size() >= UINT32_MAX) return err(ENOSPC);
  if (!grow) return err(ENOSPC);
  auto buf = grow(h);
  if (!buf.ok()) return Error{buf.error()};
  if (!*buf) return err(EIO);
  // The block is already mapped into the directory, so it joins the index
  // even if the caller's update fails later: memory mirrors the disk.
  Block blk;
  blk.buf = std::move(*buf);
  blocks_.push_back(std::move(blk));
  uint32_t b = uint32_t(blocks_.size() - 1);
  note_room(b);
  return b;
}

std::optional<uint32_t> Directory::find_record(const Block& blk, std::string_view name) const {
  const uint8_t* p = blk.buf->payload();
  uint32_t pos = 0;
  while (pos < blk.used) {
    uint8_t len = p[pos + 9];
    if (len == name.size() && std::memcmp(p + pos + kDirRecordHeader, name.data(), len) == 0)
      return pos;
    pos += kDirRecordHeader + len;
  }
  return std::nullopt;
}

}  // namespace stablefs
