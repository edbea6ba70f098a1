// Mounts a corrupted image through the engine (Filesystem::mount, the path
// the daemon takes), walks the whole tree as the kernel would (readdir,
// lookup, getattr, read, readlink, listxattr/getxattr), optionally changes
// it, unmounts, and runs fsck on what the mount left. Input: see
// fuzz/fuzz_image.h. A corrupt image must give errors, never a crash, a
// hang, a sanitizer report or unbounded memory.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/filesystem.h"
#include "core/fsck.h"
#include "core/io/borrowed_device.h"
#include "fuzz/fuzz_image.h"

using namespace stablefs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::PatchedImage img(data, size);
  MountOptions o;
  // Small caches: a mount per input, and eviction paths are exercised.
  o.cache_bytes = 1 << 20;
  o.meta_cache_bytes = 256 << 10;
  o.read_only = img.flags() & fuzz::kFlagReadOnly;
  std::string why;
  auto fs = Filesystem::mount(std::make_unique<BorrowedDevice>(img.device()), o, &why);
  if (fs.ok()) {
    fuzz::walk_tree(**fs);
    if (!o.read_only && (img.flags() & fuzz::kFlagWrites)) {
      fuzz::change_tree(**fs);
      fuzz::walk_tree(**fs);
    }
    (void)(*fs)->unmount();
  }
  FsckOptions fo;
  fo.scrub = true;
  fo.read_only = true;
  (void)check_filesystem(img.device(), fo);
  return 0;
}
