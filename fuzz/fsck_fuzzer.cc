// fsck (core/fsck.cc) on a corrupted image: replay, every structural check
// and the scrub, read-only and then writing (its corrections land in the
// in-memory overlay, never in the base image). Input: see fuzz/fuzz_image.h
// (flags bits 2 and 3 unused). fsck must never crash, hang or allocate
// without bound, whatever the image says; -n and a plain run must agree,
// and a plain run must leave nothing to correct. Then -y repairs what it
// can (through the journal, into the overlay): a repair that reports no
// error left must leave a filesystem that -n finds clean.
#include <cstddef>
#include <cstdint>

#include "core/fsck.h"
#include "fuzz/fuzz_check.h"
#include "fuzz/fuzz_image.h"

using namespace stablefs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::PatchedImage img(data, size);
  auto run = [&](bool read_only, FsckRepair repair = FsckRepair::kNone) {
    FsckOptions fo;
    fo.scrub = true;
    fo.read_only = read_only;
    fo.repair = repair;
    return check_filesystem(img.device(), fo);
  };
  // -n replays into memory what a plain run replays onto the device, so
  // both must see the same filesystem and find the same errors; after the
  // plain run, nothing is left to correct.
  auto ro = run(true);
  auto rw = run(false);
  auto again = run(true);
  if (ro.ok() && rw.ok()) {
    FUZZ_CHECK(ro->errors == rw->errors);
    FUZZ_CHECK(ro->checksum_mismatches == rw->checksum_mismatches);
    FUZZ_CHECK(ro->corrections_skipped >= rw->corrections);
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(again->corrections_skipped == 0);
    FUZZ_CHECK(again->errors == rw->errors);
  }
  auto fixed = run(false, FsckRepair::kAll);
  auto after = run(true);
  if (fixed.ok() && after.ok()) {
    FUZZ_CHECK(after->corrections_skipped == 0);
    if (fixed->errors == 0 && fixed->checksum_mismatches == 0)
      FUZZ_CHECK(after->errors == 0 && after->checksum_mismatches == 0);
  }
  return 0;
}
