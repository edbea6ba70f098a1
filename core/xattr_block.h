// An inode's extended attributes on disk: one XATR block, or for a set
// that does not fit one, an XIDX index and its XDAT members
// (core/FORMAT.md, "Xattr block" and "Xattr sets of several blocks").
// Loading them into Inode::xattrs, storing a new set, freeing them. Shared
// by the xattr calls (attrs_fs.cc), the ACL rules (acl_fs.cc) and the
// release of an inode (inode_store.cc).
#pragma once

#include <sys/xattr.h>

#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "core/allocator.h"
#include "core/base/result.h"
#include "core/inode.h"
#include "core/xattr_format.h"
#include "journal/buffer.h"
#include "journal/journal.h"

namespace stablefs {

// Where xattr blocks come from and go.
struct XattrSpace {
  BufferCache& cache;
  Allocator& alloc;
  // Makes the superblocks' large_xattrs bit durable (nothing once it is
  // set); called before a handle first dirties an index block.
  std::function<Status()> enable_large_xattrs;
};

// The log blocks one store of a set may dirty at most: every member, the
// index, the inode's table block, two bitmap blocks, and room for the
// revoke records of what it frees. A handle that may store a set starts
// with them as credits (Journal::start), so the request threads storing
// sets at once cannot outgrow the smallest log between them.
constexpr uint64_t kXattrStoreCredits = kXattrMaxMembers + 8;

// Fills n.xattrs from its block(s) once (EUCLEAN for a corrupt block or
// set). n.mu held.
Status load_xattrs(BufferCache& cache, Inode& n);

// Writes `xs` as the xattrs of inode `ino`, whose attributes are to become
// `d`: its blocks are allocated, rewritten or freed in h, and `d`'s
// xattr_block and blocks follow (never the inode itself). ENOSPC when no
// form holds `xs` (check_xattr_set_bounds) or the device is full: then
// nothing changed. The caller stores `d` and makes `xs` the inode's map
// only once both succeeded, so get/list never answer with a value that
// was not stored. The inode's mu held.
Status store_xattrs(Handle& h, const XattrSpace& space, uint64_t ino, DiskInode& d,
                    const XattrMap& xs);

// Frees every xattr block of `d` in h (the inode is released) and clears
// its xattr_block. An index that cannot be read is freed alone, with a
// log line: its members stay allocated until fsck finds them leaked.
Status free_xattrs(Handle& h, const XattrSpace& space, uint64_t ino, DiskInode& d);

// setxattr's flags against what exists: XATTR_CREATE of an existing name
// is EEXIST, XATTR_REPLACE of a missing one ENODATA.
inline Status check_xattr_flags(const XattrMap& xs, std::string_view name, int flags) {
  bool exists = xs.count(std::string(name)) != 0;
  if ((flags & XATTR_CREATE) && exists) return err(EEXIST);
  if ((flags & XATTR_REPLACE) && !exists) return err(ENODATA);
  return Status::Ok();
}

// Whether some form holds `xs`.
inline bool xattrs_fit(const XattrMap& xs) { return check_xattr_set_bounds(xs).ok(); }

}  // namespace stablefs
