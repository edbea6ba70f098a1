// Directories: opendir/releasedir, readdir, readdirplus and fsyncdir.
// Offsets handed to the kernel are the engine's cookies, so a readdir that
// resumes at `off` continues right after the entry that carried it.
#include <sys/stat.h>

#include <cstring>
#include <vector>

#include "fs/request.h"

namespace stablefs {
namespace {

bool is_dot_or_dotdot(const std::string& name) { return name == "." || name == ".."; }

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  guarded(req, RequestOp::kOpendir, [&] {
    Status s = mount_of(req).fs().opendir(ino);
    if (!s.ok()) return reply_status(req, s);
    fuse_reply_open(req, fi);
  });
}

void op_releasedir(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* /*fi*/) {
  guarded(req, RequestOp::kReleasedir, [&] { fuse_reply_err(req, 0); });
}

void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* /*fi*/) {
  guarded(req, RequestOp::kFsyncdir,
          [&] { reply_status(req, mount_of(req).fs().fsyncdir(ino, datasync != 0)); });
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* /*fi*/) {
  guarded(req, RequestOp::kReaddir, [&] {
    std::vector<char> buf(size);
    size_t used = 0;
    Status s = mount_of(req).fs().readdir(ino, uint64_t(off), [&](const DirListEntry& d) {
      struct stat st {};
      st.st_ino = d.ino;
      st.st_mode = d.type << 12;  // only the file type bits are used
      size_t n = fuse_add_direntry(req, buf.data() + used, size - used, d.name.c_str(), &st,
                                   off_t(d.cookie));
      if (n > size - used) return false;  // full: the next call resumes here
      used += n;
      return true;
    });
    // An error after some entries were listed is reported on the next call.
    if (!s.ok() && used == 0) return reply_status(req, s);
    fuse_reply_buf(req, buf.data(), used);
  });
}

// Every entry but "." and ".." is a lookup: the kernel takes a reference
// on each node it receives here (fuse_direntplus_link) and forgets it
// later. So an entry is looked up only once it is known to fit, and if the
// reply never arrives the references are dropped again.
void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    fuse_file_info* /*fi*/) {
  guarded(req, RequestOp::kReaddirplus, [&] {
    MountContext& m = mount_of(req);
    std::vector<char> buf(size);
    std::vector<uint64_t> referenced;
    // Sized so no reallocation (which could throw) follows a lookup: an
    // entry takes at least fuse_direntplus's 144-byte header.
    referenced.reserve(size / 144 + 1);
    size_t used = 0;
    int lookup_error = 0;
    Status s = m.fs().readdir(ino, uint64_t(off), [&](const DirListEntry& d) {
      size_t need = fuse_add_direntry_plus(req, nullptr, 0, d.name.c_str(), nullptr, 0);
      if (need > size - used) return false;
      fuse_entry_param e{};
      if (is_dot_or_dotdot(d.name)) {
        // The kernel ignores attributes here and takes no reference.
        e.attr.st_ino = d.ino;
        e.attr.st_mode = d.type << 12;
      } else {
        auto r = m.fs().lookup(ino, d.name);
        if (!r.ok()) {
          if (r.error() == ENOENT) return true;  // unlinked since listed
          lookup_error = r.error();
          return false;
        }
        referenced.push_back(r->ino);
        e = entry_param(m, *r);
      }
      used += fuse_add_direntry_plus(req, buf.data() + used, size - used, d.name.c_str(), &e,
                                     off_t(d.cookie));
      return true;
    });
    int error = s.ok() ? lookup_error : s.error();
    // Once an entry is in the buffer its reference is counted, so an error
    // can only be reported while the buffer is still empty.
    if (error != 0 && used == 0) return (void)reply_error(req, error);
    if (fuse_reply_buf(req, buf.data(), used) != 0)
      for (uint64_t i : referenced) drop_references(m.fs(), i, 1);
  });
}

}  // namespace

void add_dir_ops(fuse_lowlevel_ops& ops) {
  ops.opendir = op_opendir;
  ops.releasedir = op_releasedir;
  ops.fsyncdir = op_fsyncdir;
  ops.readdir = op_readdir;
  ops.readdirplus = op_readdirplus;
}

}  // namespace stablefs
