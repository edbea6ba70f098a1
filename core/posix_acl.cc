#include "core/posix_acl.h"

#include <cstring>

#include "core/base/endian.h"

namespace stablefs {
namespace {

constexpr size_t kHeaderBytes = 4;
constexpr size_t kEntryBytes = 8;

// The kernel's posix_acl_valid: order, uniqueness, and the entries that
// must (or may only once) be there.
bool valid(const Acl& acl) {
  int user_obj = 0, group_obj = 0, other = 0, mask = 0, named = 0;
  const AclEntry* prev = nullptr;
  for (const AclEntry& e : acl) {
    if (e.perm & ~7u) return false;
    if (prev && (e.tag < prev->tag || (e.tag == prev->tag && e.id <= prev->id))) return false;
    switch (e.tag) {
      case kAclUserObj: user_obj++; break;
      case kAclGroupObj: group_obj++; break;
      case kAclOther: other++; break;
      case kAclMask: mask++; break;
      case kAclUser:
      case kAclGroup:
        if (e.id == kAclUndefinedId) return false;
        named++;
        break;
      default: return false;
    }
    // Only named entries may repeat a tag (with increasing ids, above).
    if (prev && e.tag == prev->tag && e.tag != kAclUser && e.tag != kAclGroup) return false;
    prev = &e;
  }
  return user_obj == 1 && group_obj == 1 && other == 1 && mask <= 1 && (named == 0 || mask == 1);
}

}  // namespace

Result<Acl> decode_acl(std::string_view value) {
  if (value.size() < kHeaderBytes || (value.size() - kHeaderBytes) % kEntryBytes != 0)
    return err(EINVAL);
  auto p = reinterpret_cast<const uint8_t*>(value.data());
  if (get_le32(p) != kAclXattrVersion) return err(EINVAL);
  Acl acl((value.size() - kHeaderBytes) / kEntryBytes);
  for (size_t i = 0; i < acl.size(); i++) {
    const uint8_t* q = p + kHeaderBytes + i * kEntryBytes;
    acl[i].tag = get_le16(q);
    acl[i].perm = get_le16(q + 2);
    acl[i].id = get_le32(q + 4);
    // The id of an unnamed entry means nothing; the kernel writes -1.
    if (acl[i].tag != kAclUser && acl[i].tag != kAclGroup) acl[i].id = kAclUndefinedId;
  }
  if (!acl.empty() && !valid(acl)) return err(EINVAL);
  return acl;
}

std::string encode_acl(const Acl& acl) {
  std::string out(kHeaderBytes + acl.size() * kEntryBytes, '\0');
  auto p = reinterpret_cast<uint8_t*>(out.data());
  put_le32(p, kAclXattrVersion);
  for (size_t i = 0; i < acl.size(); i++) {
    uint8_t* q = p + kHeaderBytes + i * kEntryBytes;
    put_le16(q, acl[i].tag);
    put_le16(q + 2, acl[i].perm);
    put_le32(q + 4, acl[i].id);
  }
  return out;
}

uint32_t acl_mode_bits(const Acl& acl, bool* equivalent) {
  uint32_t mode = 0;
  bool equiv = true;
  for (const AclEntry& e : acl) {
    switch (e.tag) {
      case kAclUserObj: mode |= uint32_t(e.perm) << 6; break;
      case kAclGroupObj: mode |= uint32_t(e.perm) << 3; break;
      case kAclOther: mode |= e.perm; break;
      case kAclMask:
        mode = (mode & ~0070u) | (uint32_t(e.perm) << 3);
        equiv = false;
        break;
      default: equiv = false;
    }
  }
  // MASK sorts after GROUP_OBJ, so its bits above replaced the group's.
  if (equivalent) *equivalent = equiv;
  return mode;
}

void acl_chmod(Acl& acl, uint32_t mode) {
  AclEntry* group_obj = nullptr;
  AclEntry* mask = nullptr;
  for (AclEntry& e : acl) {
    if (e.tag == kAclUserObj) e.perm = (mode >> 6) & 7;
    if (e.tag == kAclGroupObj) group_obj = &e;
    if (e.tag == kAclMask) mask = &e;
    if (e.tag == kAclOther) e.perm = mode & 7;
  }
  AclEntry* group_bits = mask ? mask : group_obj;
  if (group_bits) group_bits->perm = (mode >> 3) & 7;
}

uint32_t acl_create_masked(Acl& acl, uint32_t mode, bool* equivalent) {
  uint32_t bits = mode & 0777;
  AclEntry* group_obj = nullptr;
  AclEntry* mask = nullptr;
  bool equiv = true;
  for (AclEntry& e : acl) {
    switch (e.tag) {
      case kAclUserObj:
        e.perm &= (bits >> 6) & 7;
        bits = (bits & ~0700u) | (uint32_t(e.perm) << 6);
        break;
      case kAclGroupObj: group_obj = &e; break;
      case kAclOther:
        e.perm &= bits & 7;
        bits = (bits & ~0007u) | e.perm;
        break;
      case kAclMask:
        mask = &e;
        equiv = false;
        break;
      default: equiv = false;
    }
  }
  AclEntry* group_bits = mask ? mask : group_obj;
  if (group_bits) {
    group_bits->perm &= (bits >> 3) & 7;
    bits = (bits & ~0070u) | (uint32_t(group_bits->perm) << 3);
  }
  if (equivalent) *equivalent = equiv;
  return (mode & ~0777u) | bits;
}

}  // namespace stablefs
