// fsck (core/fsck.cc) on a corrupted image: replay, every structural check
// and the scrub, read-only and then writing (its corrections land in the
// in-memory overlay, never in the base image). Input: see fuzz/fuzz_image.h
// (flags bits 2 and 3 unused). fsck must never crash, hang or allocate
// without bound, whatever the image says.
#include <cstddef>
#include <cstdint>

#include "core/fsck.h"
#include "fuzz/fuzz_image.h"

using namespace stablefs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::PatchedImage img(data, size);
  for (bool read_only : {true, false}) {
    FsckOptions fo;
    fo.scrub = true;
    fo.read_only = read_only;
    (void)check_filesystem(img.device(), fo);
  }
  return 0;
}
