// The encodings of an inode's xattr set (core/FORMAT.md, "Xattr block" and
// "Xattr sets of several blocks"): the records of the one-block XATR
// payload, the set bytes of the multi-block form, and its XIDX index. No
// I/O: the engine (core/xattr_block.cc), fsck and the tests share them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/format.h"
#include "core/base/result.h"

namespace stablefs {

using XattrMap = std::map<std::string, std::string>;

// The two record layouts: the XATR payload (u16 count, u16 value lengths)
// and the set bytes of the multi-block form (u32 count, u32 value lengths).
enum class XattrLayout { kBlock, kSet };

// The bytes `xs` takes in `layout`.
size_t xattr_encoded_size(const XattrMap& xs, XattrLayout layout);
// Whether the one-block form holds `xs` (the engine then always uses it).
bool fits_one_xattr_block(const XattrMap& xs);
// ENOSPC when no form can store `xs`: set bytes past kXattrMaxSetBytes, or
// a name list that listxattr(2) could not return (kXattrListMax).
Status check_xattr_set_bounds(const XattrMap& xs);

// Writes the records of `xs` to `out`, which holds
// xattr_encoded_size(xs, layout) bytes (and for kBlock every value is
// shorter than 64 KiB, as fits_one_xattr_block promises).
void encode_xattr_records(const XattrMap& xs, XattrLayout layout, uint8_t* out);
// The set bytes of the multi-block form.
std::string encode_xattr_set(const XattrMap& xs);

// Walks the records of bytes [p, p + n) in `layout`, calling visit(name,
// value) for each in order, trusting nothing. Returns "" or the first
// malformation ("record 2 of 5 runs past the end of the block"); the
// records before it were visited. Names are not judged here: fsck says
// which it accepts, and the engine stores only those.
using XattrVisitor = std::function<void(std::string_view name, std::string_view value)>;
std::string parse_xattr_records(const uint8_t* p, size_t n, XattrLayout layout,
                                const XattrVisitor& visit);
// The records as a map; EUCLEAN when parse_xattr_records finds fault.
Result<XattrMap> decode_xattr_records(const uint8_t* p, size_t n, XattrLayout layout);

// The XIDX payload.
struct XattrIndex {
  uint32_t set_bytes = 0;
  uint64_t set_hash = 0;
  std::vector<uint64_t> members;  // in order; ceil(set_bytes / kMetaPayload) of them
};
void encode_xattr_index(const XattrIndex& x, uint8_t* payload);
// EUCLEAN with a reason when the member count is out of bounds or does not
// match set_bytes, a member is block 0, or a reserved byte is not zero.
Result<XattrIndex> decode_xattr_index(const uint8_t* payload, std::string* why);
// How many members hold `set_bytes`.
inline uint32_t xattr_members_for(size_t set_bytes) {
  return uint32_t((set_bytes + kMetaPayload - 1) / kMetaPayload);
}
// XXH3-64 of the set bytes seeded with the inode number: catches a member
// that verifies but belongs to another version of the set, or another set.
uint64_t xattr_set_hash(uint64_t ino, std::string_view set);

}  // namespace stablefs
