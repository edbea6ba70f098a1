// Opening the backing store: an image file, a block device, or an export on
// an NBD server named by a URI.
#pragma once

#include <memory>
#include <string>

#include "core/base/result.h"
#include "core/io/block_device.h"

namespace stablefs {

struct OpenOptions {
  bool read_only = false;
  bool create = false;            // create the image file if missing (mkfs)
  uint64_t create_size = 0;       // size in bytes for a new image
  bool exclusive = true;          // O_EXCL on block devices / flock on images
  // How long to wait for another process's exclusive use to end before
  // EBUSY: an unmount returns before the old daemon has written back and
  // let go of the image, and `umount && mount` must still work.
  uint32_t busy_wait_ms = 0;
  // An NBD server that advertises multi-conn gets this many connections.
  int nbd_connections = 1;
};

// True when a mount in /proc/self/mountinfo has `source` (a canonical
// path) as its source, or, for a loop device and the file bound to it, the
// other one: the image is in use by a live mount, as opposed to a daemon
// that is only finishing an unmount.
bool is_mount_source(const std::string& source);

// True for the NBD URIs accepted wherever an image path is: nbd://,
// nbds://, nbd+unix://, nbds+unix:// (libnbd's syntax, nbd_connect_uri(3)).
bool is_nbd_uri(const std::string& target);

// Opens path with io_uring. Image files use O_DIRECT when the host
// filesystem allows it; block devices get their size from BLKGETSIZE64 and
// sector size from BLKSSZGET. `exclusive` on a loop device also takes the
// image file's lock on the file bound to it, so a daemon on /dev/loopN and
// one on that file exclude each other. Errors: ENOENT, EACCES, ENOTBLK
// (neither a regular file nor a block device), EBUSY (in use by another
// stablefs).
// An NBD URI opens an NbdDevice: size and limits come from the server,
// `create` does not apply, and `exclusive` takes a lock on this host named
// after the URI (an NBD server cannot be locked remotely; see the README's
// "Network storage" for the server-side setting). Connection failures are
// logged with libnbd's reason and return its errno (ECONNREFUSED, ENOENT for
// a missing socket, ETIMEDOUT for a server that holds the handshake).
Result<std::unique_ptr<BlockDevice>> open_device(const std::string& path,
                                                 const OpenOptions& opts);

}  // namespace stablefs
