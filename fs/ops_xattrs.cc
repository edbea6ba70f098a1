// Extended attributes, with getxattr/listxattr's two-step protocol: a
// size of 0 asks only how big the value is; a buffer too small is ERANGE.
#include <sys/stat.h>

#include <algorithm>
#include <string>
#include <string_view>

#include "core/posix_acl.h"
#include "fs/request.h"
#include "fs/request_caller.h"

namespace stablefs {
namespace {

void reply_sized(fuse_req_t req, const Result<std::string>& r, size_t size) {
  if (!r.ok()) return (void)reply_error(req, r.error());
  if (size == 0) return (void)fuse_reply_xattr(req, r->size());
  if (r->size() > size) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, r->data(), r->size());
}

// Setting an access ACL sets the mode, and the VFS drops setgid from it
// when the caller is outside the file's group and lacks CAP_FSETID
// (posix_acl_update_mode). The kernel says so to a FUSE daemon only
// through FUSE_SETXATTR_EXT, which libfuse 3.14 cannot negotiate, so the
// rule is applied here from what /proc says of the caller.
bool acl_kills_sgid(fuse_req_t req, Filesystem& fs, fuse_ino_t ino, const char* name) {
  if (std::string_view(name) != kAclAccessXattr) return false;
  auto a = fs.getattr(ino);
  if (!a.ok() || !(a->mode & S_ISGID)) return false;
  RequestCaller caller(req);
  return !caller.in_group(a->gid) && !caller.has_fsetid();
}

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                 int flags) {
  guarded(req, RequestOp::kSetxattr, [&] {
    Filesystem& fs = mount_of(req).fs();
    if (acl_kills_sgid(req, fs, ino, name)) flags |= kSetxattrAclKillSgid;
    reply_status(req, fs.setxattr(ino, name, std::string_view(value, size), flags));
  });
}

// Counted once more on its own when it asks for security.capability: the
// kernel sends that before every write (core/stats/request_counters.h).
RequestStat* capability_subset(fuse_req_t req, const char* name) {
  if (std::string_view(name) != "security.capability") return nullptr;
  return &mount_of(req).requests().getxattr_security_capability;
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  guarded(req, RequestOp::kGetxattr, capability_subset(req, name),
          [&] { reply_sized(req, mount_of(req).fs().getxattr(ino, name), size); });
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  guarded(req, RequestOp::kListxattr,
          [&] { reply_sized(req, mount_of(req).fs().listxattr(ino), size); });
}

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  guarded(req, RequestOp::kRemovexattr,
          [&] { reply_status(req, mount_of(req).fs().removexattr(ino, name)); });
}

}  // namespace

void add_xattr_ops(fuse_lowlevel_ops& ops) {
  ops.setxattr = op_setxattr;
  ops.getxattr = op_getxattr;
  ops.listxattr = op_listxattr;
  ops.removexattr = op_removexattr;
}

}  // namespace stablefs
