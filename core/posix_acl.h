// POSIX ACLs as Linux passes them through extended attributes
// (system.posix_acl_access / system.posix_acl_default): decoding with the
// kernel's validity rules, encoding, and the three mode <-> ACL rules a
// filesystem that stores ACLs must apply itself (the kernel's
// posix_acl_equiv_mode, posix_acl_chmod and posix_acl_create). Pure
// functions over values: no inode, no disk, no FUSE.
//
// The xattr value (include/uapi/linux/posix_acl_xattr.h), little-endian:
//   u32 version (2), then per entry: u16 tag · u16 perm · u32 id.
// Entries are sorted by tag, USER and GROUP entries by id, ids unique;
// exactly one USER_OBJ, GROUP_OBJ and OTHER; a MASK (at most one) is
// required as soon as there is a named USER or GROUP entry.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/result.h"

namespace stablefs {

inline constexpr std::string_view kAclAccessXattr = "system.posix_acl_access";
inline constexpr std::string_view kAclDefaultXattr = "system.posix_acl_default";
inline bool is_posix_acl_name(std::string_view name) {
  return name == kAclAccessXattr || name == kAclDefaultXattr;
}

enum AclTag : uint16_t {
  kAclUserObj = 0x01,
  kAclUser = 0x02,
  kAclGroupObj = 0x04,
  kAclGroup = 0x08,
  kAclMask = 0x10,
  kAclOther = 0x20,
};
inline constexpr uint32_t kAclXattrVersion = 2;
inline constexpr uint32_t kAclUndefinedId = 0xffffffff;

struct AclEntry {
  uint16_t tag = 0;
  uint16_t perm = 0;  // rwx in the low three bits
  uint32_t id = kAclUndefinedId;  // uid or gid for USER / GROUP
  bool operator==(const AclEntry&) const = default;
};
using Acl = std::vector<AclEntry>;

// An empty ACL (a header and no entries) decodes to an empty vector: the
// kernel reads it as "no ACL". Anything malformed or invalid is EINVAL.
Result<Acl> decode_acl(std::string_view value);
std::string encode_acl(const Acl& acl);

// The permission bits (0777) an ACL shows through the mode: owner from
// USER_OBJ, group from MASK when there is one (else GROUP_OBJ), other from
// OTHER. *equivalent says whether the mode says everything the ACL does
// (only the three base entries), in which case no ACL needs storing.
uint32_t acl_mode_bits(const Acl& acl, bool* equivalent);

// chmod: the ACL follows the new permission bits (USER_OBJ, MASK or else
// GROUP_OBJ, OTHER), as posix_acl_chmod does.
void acl_chmod(Acl& acl, uint32_t mode);

// A new inode under a directory with default ACL `acl`: the ACL and the
// requested mode are masked by each other (posix_acl_create). Returns the
// new mode (type and setuid/setgid/sticky bits kept) and turns `acl` into
// the new inode's access ACL; *equivalent as for acl_mode_bits.
uint32_t acl_create_masked(Acl& acl, uint32_t mode, bool* equivalent);

}  // namespace stablefs
