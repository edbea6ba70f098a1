#include "core/xattr_format.h"

#include <cstring>

#include "core/base/checksum.h"
#include "core/base/endian.h"

namespace stablefs {

namespace {

struct LayoutSizes {
  size_t header, entry_header;
};

LayoutSizes sizes_of(XattrLayout layout) {
  return layout == XattrLayout::kBlock ? LayoutSizes{kXattrHeader, kXattrEntryHeader}
                                       : LayoutSizes{kXattrSetHeader, kXattrSetEntryHeader};
}

}  // namespace

size_t xattr_encoded_size(const XattrMap& xs, XattrLayout layout) {
  const LayoutSizes s = sizes_of(layout);
  size_t n = s.header;
  for (const auto& [k, v] : xs) n += s.entry_header + k.size() + v.size();
  return n;
}

bool fits_one_xattr_block(const XattrMap& xs) {
  // A value of 64 KiB cannot be in the block anyway, so the u16 lengths
  // hold every value of a set that fits.
  return xattr_encoded_size(xs, XattrLayout::kBlock) <= kMetaPayload;
}

Status check_xattr_set_bounds(const XattrMap& xs) {
  if (fits_one_xattr_block(xs)) return Status::Ok();
  if (xattr_encoded_size(xs, XattrLayout::kSet) > kXattrMaxSetBytes) return err(ENOSPC);
  size_t list = 0;
  for (const auto& [k, v] : xs) list += k.size() + 1;
  if (list > kXattrListMax) return err(ENOSPC);
  return Status::Ok();
}

void encode_xattr_records(const XattrMap& xs, XattrLayout layout, uint8_t* out) {
  Encoder e(out, xattr_encoded_size(xs, layout));
  if (layout == XattrLayout::kBlock) e.u16(uint16_t(xs.size()));
  else e.u32(uint32_t(xs.size()));
  for (const auto& [k, v] : xs) {
    e.u8(uint8_t(k.size()));
    if (layout == XattrLayout::kBlock) e.u16(uint16_t(v.size()));
    else e.u32(uint32_t(v.size()));
    e.bytes(k.data(), k.size());
    e.bytes(v.data(), v.size());
  }
}

std::string encode_xattr_set(const XattrMap& xs) {
  std::string set(xattr_encoded_size(xs, XattrLayout::kSet), '\0');
  encode_xattr_records(xs, XattrLayout::kSet, reinterpret_cast<uint8_t*>(set.data()));
  return set;
}

std::string parse_xattr_records(const uint8_t* p, size_t n, XattrLayout layout,
                                const XattrVisitor& visit) {
  const char* where = layout == XattrLayout::kBlock ? "block" : "set";
  Decoder d(p, n);
  const uint32_t count = layout == XattrLayout::kBlock ? d.u16() : d.u32();
  if (d.overflow()) return std::string("the record count runs past the end of the ") + where;
  for (uint32_t i = 0; i < count; i++) {
    const std::string at = "record " + std::to_string(i) + " of " + std::to_string(count);
    const uint8_t nl = d.u8();
    const uint32_t vl = layout == XattrLayout::kBlock ? d.u16() : d.u32();
    if (d.overflow() || nl > d.remaining() || vl > d.remaining() - nl)
      return at + " runs past the end of the " + where;
    if (nl == 0) return at + " has an empty name";
    if (vl > kXattrValueMax)
      return at + " has a value of " + std::to_string(vl) + " bytes (at most " +
             std::to_string(kXattrValueMax) + ")";
    const char* name = reinterpret_cast<const char*>(p + d.pos());
    d.skip(nl);
    const char* value = reinterpret_cast<const char*>(p + d.pos());
    d.skip(vl);
    visit(std::string_view(name, nl), std::string_view(value, vl));
  }
  return "";
}

Result<XattrMap> decode_xattr_records(const uint8_t* p, size_t n, XattrLayout layout) {
  XattrMap xs;
  std::string why = parse_xattr_records(p, n, layout, [&](std::string_view k, std::string_view v) {
    xs[std::string(k)] = std::string(v);
  });
  if (!why.empty()) return err(EUCLEAN);
  return xs;
}

void encode_xattr_index(const XattrIndex& x, uint8_t* payload) {
  std::memset(payload, 0, kMetaPayload);
  Encoder e(payload, kMetaPayload);
  e.u32(x.set_bytes);
  e.u16(uint16_t(x.members.size()));
  e.u16(0);
  e.u64(x.set_hash);
  for (uint64_t b : x.members) e.u64(b);
}

Result<XattrIndex> decode_xattr_index(const uint8_t* payload, std::string* why) {
  auto fail = [&](std::string reason) -> Result<XattrIndex> {
    if (why) *why = std::move(reason);
    return err(EUCLEAN);
  };
  Decoder d(payload, kMetaPayload);
  XattrIndex x;
  x.set_bytes = d.u32();
  const uint16_t count = d.u16();
  const uint16_t reserved = d.u16();
  x.set_hash = d.u64();
  if (reserved != 0) return fail("reserved index bytes are not zero");
  if (count == 0 || count > kXattrMaxMembers)
    return fail("member count " + std::to_string(count) + " is not between 1 and " +
                std::to_string(kXattrMaxMembers));
  if (x.set_bytes < kXattrSetHeader || xattr_members_for(x.set_bytes) != count)
    return fail(std::to_string(count) + " members cannot hold a set of " +
                std::to_string(x.set_bytes) + " bytes");
  for (uint16_t i = 0; i < count; i++) {
    x.members.push_back(d.u64());
    if (x.members.back() == 0) return fail("member " + std::to_string(i) + " is block 0");
  }
  return x;
}

uint64_t xattr_set_hash(uint64_t ino, std::string_view set) {
  return xxh3(set.data(), set.size(), ino);
}

}  // namespace stablefs
