// Session lifetime (init, destroy) and the assembled operation table.
#include <cstring>

#include "fs/request.h"

namespace stablefs {
namespace {

void op_init(void* userdata, fuse_conn_info* conn) {
  auto* m = static_cast<MountContext*>(userdata);
  negotiate_capabilities(conn, m->options());
}

// Runs on FUSE_DESTROY (a clean unmount) or from fuse_session_destroy:
// everything still dirty is written back and committed here.
void op_destroy(void* userdata) {
  auto* m = static_cast<MountContext*>(userdata);
  try {
    (void)m->unmount_once();  // logs its own failure
  } catch (const std::exception& e) {
    SFS_LOG("unmount: internal error: %s", e.what());
  }
}

}  // namespace

fuse_lowlevel_ops make_lowlevel_ops() {
  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.destroy = op_destroy;
  add_name_ops(ops);
  add_attr_ops(ops);
  add_data_ops(ops);
  add_dir_ops(ops);
  add_xattr_ops(ops);
  return ops;
}

}  // namespace stablefs
