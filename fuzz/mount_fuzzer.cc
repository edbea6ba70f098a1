// Mounts a corrupted image through the engine (Filesystem::mount, the path
// the daemon takes), walks the whole tree as the kernel would (readdir,
// lookup, getattr, read, readlink, listxattr/getxattr), optionally changes
// it, unmounts, and runs fsck on what the mount left. Input: see
// fuzz/fuzz_image.h. A corrupt image must give errors, never a crash, a
// hang, a sanitizer report or unbounded memory; and an image fsck finds
// clean must still be clean after a mount that unmounted cleanly.
#include <cstddef>
#include <cstdio>
#include <cstdint>
#include <string>

#include "core/filesystem.h"
#include "core/fsck.h"
#include "core/io/borrowed_device.h"
#include "fuzz/fuzz_check.h"
#include "fuzz/fuzz_image.h"

using namespace stablefs;

namespace {

// fsck -n --scrub: the inconsistencies it finds (0 = clean), or -1 when
// the check could not run. Its report lines are kept for a failure message.
int64_t fsck_errors(BlockDevice& dev, std::string* lines) {
  FsckOptions fo;
  fo.scrub = true;
  fo.read_only = true;
  fo.report = [&](const std::string& l) { *lines += l + "\n"; };
  auto r = check_filesystem(dev, fo);
  if (!r.ok()) return -1;
  return int64_t(r->errors + r->checksum_mismatches);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::PatchedImage img(data, size);
  // What fsck thinks of the image first: a mutation it cannot tell from a
  // valid filesystem (a changed timestamp, mode, name or xattr) must stay
  // a valid filesystem through a mount, the changes and the unmount.
  std::string before_lines;
  const int64_t before = fsck_errors(img.device(), &before_lines);

  MountOptions o;
  // Small caches: a mount per input, and eviction paths are exercised.
  o.cache_bytes = 1 << 20;
  o.meta_cache_bytes = 256 << 10;
  o.read_only = img.flags() & fuzz::kFlagReadOnly;
  std::string why;
  auto fs = Filesystem::mount(std::make_unique<BorrowedDevice>(img.device()), o, &why);
  bool clean_unmount = false;
  if (fs.ok()) {
    fuzz::walk_tree(**fs);
    if (!o.read_only && (img.flags() & fuzz::kFlagWrites)) {
      fuzz::change_tree(**fs);
      fuzz::walk_tree(**fs);
    }
    clean_unmount = (*fs)->unmount().ok();
  }
  std::string after_lines;
  const int64_t after = fsck_errors(img.device(), &after_lines);
  if (before == 0 && clean_unmount && after != 0) {
    std::fprintf(stderr, "fsck was clean before the mount; after it:\n%s", after_lines.c_str());
    FUZZ_CHECK(after == 0);
  }
  return 0;
}
