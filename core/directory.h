// A directory's entries: an in-memory hash index over on-disk directory
// blocks. Lookup, insert and remove are O(1) after load, so a directory with
// 100k entries stays fast; readdir walks entries in stable cookie order.
//
// On disk (core/base/format.h, "Directory blocks") each block's payload is a
// packed run of records, u64 ino | u8 type | u8 name_len | name, ended by a
// record with ino 0 or by the payload end. "." and ".." are never stored.
//
// Not thread-safe: the directory inode's lock serialises access.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/base/result.h"
#include "journal/buffer.h"
#include "journal/journal.h"

namespace stablefs {

struct DirEntry {
  std::string name;
  uint64_t ino = 0;
  uint8_t type = 0;  // DirType
};

class Directory {
 public:
  explicit Directory(uint64_t ino) : ino_(ino) {}
  Directory(const Directory&) = delete;
  Directory& operator=(const Directory&) = delete;

  // Builds the index from the directory's blocks, in logical order (already
  // verified metadata buffers with magic kMagicDirectory). EUCLEAN on a bad
  // record (zero-length or oversized name, record past the block end, name
  // containing '/' or NUL, "." or "..", unknown type, duplicate name) or on
  // a block whose header is not a directory block owned by `ino`.
  // O(total bytes).
  static Result<std::unique_ptr<Directory>> load(
      uint64_t ino, std::vector<std::shared_ptr<MetaBuffer>> blocks);

  std::optional<DirEntry> lookup(std::string_view name) const;
  size_t size() const { return by_name_.size(); }
  bool empty() const { return by_name_.empty(); }
  size_t block_count() const { return blocks_.size(); }
  // The directory's blocks in logical order (for fsck and tests).
  std::vector<std::shared_ptr<MetaBuffer>> blocks() const;

  // Whether `name` can be an entry: ENAMETOOLONG past 255 bytes, EINVAL
  // for an empty name, ".", "..", or a name containing '/' or NUL.
  static Status check_name(std::string_view name);
  // Adds a new entry (EEXIST if present, or check_name's error).
  // When no block has room, calls grow(h) for a fresh, mapped block with
  // magic kMagicDirectory, and appends it.
  using GrowFn = std::function<Result<std::shared_ptr<MetaBuffer>>(Handle&)>;
  Status add(Handle& h, std::string_view name, uint64_t ino, uint8_t type, const GrowFn& grow);
  // Removes an entry (ENOENT if absent). The block keeps its place even
  // when it becomes empty: directories never shrink.
  Status remove(Handle& h, std::string_view name);
  // Points an existing entry at another inode (rename over an existing name).
  // The entry keeps its cookie.
  Status replace(Handle& h, std::string_view name, uint64_t ino, uint8_t type);

  // Calls emit for every entry with cookie > after, in cookie order, until
  // emit returns false. Cookies are stable while the entry exists, never
  // 0, 1 or 2 (reserved for "start", "." and "..") and fit in 63 bits.
  // emit must not modify the directory.
  void list(uint64_t after,
            const std::function<bool(const DirEntry&, uint64_t cookie)>& emit) const;

 private:
  // Where an entry lives. Owned by by_name_; unordered_map nodes never
  // move, so by_cookie_ holds plain pointers to them.
  struct Slot {
    uint64_t ino = 0;
    uint8_t type = 0;
    uint32_t block = 0;  // index into blocks_
    uint64_t cookie = 0;
  };
  using Node = std::pair<const std::string, Slot>;
  // Transparent, so lookups by string_view don't allocate a std::string.
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  // A block's payload always holds exactly its index entries, packed from
  // offset 0 in `used` bytes and followed by a terminator; so a record's
  // offset is found by a short sequential scan instead of being kept (and
  // fixed up on every compaction) per entry.
  struct Block {
    std::shared_ptr<MetaBuffer> buf;
    uint32_t used = 0;
  };

  uint32_t free_bytes(uint32_t b) const;
  // Keeps room_ in step with blocks_[b].used; call around every change.
  void forget_room(uint32_t b);
  void note_room(uint32_t b);
  // Gives n a free cookie and enters it in by_cookie_.
  void index_cookie(Node& n);
  // Picks (or grows) a block that can take `need` bytes; returns its index.
  Result<uint32_t> block_with_room(Handle& h, uint32_t need, const GrowFn& grow);
  // Payload offset of name's record in blk; nullopt only if the invariant
  // above is broken, which lost_record() reports.
  std::optional<uint32_t> find_record(const Block& blk, std::string_view name) const;
  Error lost_record(std::string_view name) const;

  uint64_t ino_;
  std::vector<Block> blocks_;
  std::unordered_map<std::string, Slot, NameHash, std::equal_to<>> by_name_;
  std::map<uint64_t, Node*> by_cookie_;
  // (free bytes, block index) for every block that can still take the
  // smallest record; best fit by lower_bound keeps add() O(log blocks).
  std::set<std::pair<uint32_t, uint32_t>> room_;
};

}  // namespace stablefs
