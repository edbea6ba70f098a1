// An inode's extended attributes in their one metadata block (XATR,
// core/FORMAT.md): loading them into Inode::xattrs and storing a new set.
// Shared by the xattr calls (attrs_fs.cc) and the ACL rules (acl_fs.cc).
#pragma once

#include <sys/xattr.h>

#include <map>
#include <string>
#include <string_view>

#include "core/allocator.h"
#include "core/base/result.h"
#include "core/inode.h"
#include "journal/buffer.h"
#include "journal/journal.h"

namespace stablefs {

using XattrMap = std::map<std::string, std::string>;

// Fills n.xattrs from its block once (EUCLEAN for a corrupt block). n.mu held.
Status load_xattrs(BufferCache& cache, Inode& n);

// Writes `xs` to the xattr block of inode `ino`, whose attributes are to
// become `d` (the block is allocated or freed there, never in the inode
// itself). The caller stores `d` and makes `xs` the inode's map only once
// both succeeded, so get/list never answer with a value that was not
// stored. The inode's mu held.
Status store_xattrs(Handle& h, BufferCache& cache, Allocator& alloc, uint64_t ino, DiskInode& d,
                    const XattrMap& xs);

// setxattr's flags against what exists: XATTR_CREATE of an existing name
// is EEXIST, XATTR_REPLACE of a missing one ENODATA.
inline Status check_xattr_flags(const XattrMap& xs, std::string_view name, int flags) {
  bool exists = xs.count(std::string(name)) != 0;
  if ((flags & XATTR_CREATE) && exists) return err(EEXIST);
  if ((flags & XATTR_REPLACE) && !exists) return err(ENODATA);
  return Status::Ok();
}

// Whether `xs` fits the block.
bool xattrs_fit(const XattrMap& xs);

}  // namespace stablefs
