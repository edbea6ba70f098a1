// Names: lookup, the lookup-count bookkeeping (forget), and everything that
// adds, removes or moves a directory entry.
#include <sys/stat.h>

#include <string>

#include "fs/request.h"

namespace stablefs {
namespace {

void reply_attr_result(fuse_req_t req, const Result<Attr>& r) {
  if (r.ok()) reply_entry(req, *r);
  else reply_error(req, r.error());
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  guarded(req, RequestOp::kLookup, [&] {
    auto r = mount_of(req).fs().lookup(parent, name);
    if (r.ok()) return reply_entry(req, *r);
    if (r.error() == ENOENT) return reply_negative_entry(req);
    reply_error(req, r.error());
  });
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  guarded_forget(req, RequestOp::kForget, [&] { mount_of(req).fs().forget(ino, nlookup); });
}

void op_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  guarded_forget(req, RequestOp::kBatchForget, [&] {
    Filesystem& fs = mount_of(req).fs();
    for (size_t i = 0; i < count; i++) fs.forget(forgets[i].ino, forgets[i].nlookup);
  });
}

void op_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  guarded(req, RequestOp::kMknod, [&] {
    reply_attr_result(req, mount_of(req).fs().mknod(parent, name, mode, rdev, caller_creds(req)));
  });
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  guarded(req, RequestOp::kMkdir, [&] {
    reply_attr_result(req, mount_of(req).fs().mkdir(parent, name, mode, caller_creds(req)));
  });
}

void op_symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  guarded(req, RequestOp::kSymlink, [&] {
    reply_attr_result(req,
                      mount_of(req).fs().symlink(parent, name, target, caller_creds(req)));
  });
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  guarded(req, RequestOp::kReadlink, [&] {
    auto r = mount_of(req).fs().readlink(ino);
    if (r.ok()) fuse_reply_readlink(req, r->c_str());
    else reply_error(req, r.error());
  });
}

void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t new_parent, const char* new_name) {
  guarded(req, RequestOp::kLink, [&] {
    reply_attr_result(req, mount_of(req).fs().link(ino, new_parent, new_name));
  });
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  guarded(req, RequestOp::kUnlink,
          [&] { reply_status(req, mount_of(req).fs().unlink(parent, name)); });
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  guarded(req, RequestOp::kRmdir,
          [&] { reply_status(req, mount_of(req).fs().rmdir(parent, name)); });
}

// flags are renameat2's, passed on by the kernel; the engine validates
// them. RENAME_WHITEOUT needs CAP_MKNOD, which the VFS checked; the
// whiteout is the caller's, as a mknod of theirs would be.
void op_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t new_parent,
               const char* new_name, unsigned int flags) {
  // The kernel sends RENAME2 only with flags; libfuse calls us for both.
  guarded(req, flags == 0 ? RequestOp::kRename : RequestOp::kRename2, [&] {
    reply_status(req, mount_of(req).fs().rename(parent, name, new_parent, new_name, flags,
                                                caller_creds(req)));
  });
}

}  // namespace

void add_name_ops(fuse_lowlevel_ops& ops) {
  ops.lookup = op_lookup;
  ops.forget = op_forget;
  ops.forget_multi = op_forget_multi;
  ops.mknod = op_mknod;
  ops.mkdir = op_mkdir;
  ops.symlink = op_symlink;
  ops.readlink = op_readlink;
  ops.link = op_link;
  ops.unlink = op_unlink;
  ops.rmdir = op_rmdir;
  ops.rename = op_rename;
}

}  // namespace stablefs
