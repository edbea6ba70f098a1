// Shared by the image fuzzers (mount_fuzzer, fsck_fuzzer): a small,
// populated stablefs made once per process by mkfs and the engine itself,
// and a copy-on-write view of it with fuzzer-chosen bytes overwritten.
//
// Checksums would stop a fuzzer at the door (almost every mutation of a
// metadata block fails verification and is rejected before any decoder
// runs), so by default each patched block is re-sealed: a metadata block
// gets its header checksum recomputed, a superblock its trailing checksum,
// a mapped data block its checksum-table entry. e2fsprogs's fuzzers ignore
// checksum errors for the same reason. One flag bit turns re-sealing off,
// so the verification paths themselves are fuzzed too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/filesystem.h"
#include "core/io/mem_device.h"
#include "core/io/overlay_device.h"

namespace stablefs::fuzz {

enum class BaseImage {
  kClean,    // unmounted cleanly: empty log
  kCrashed,  // power cut after fsyncs: the log holds transactions to replay
};

// The image, made on first use (deterministic operations; timestamps and
// the UUID differ between processes). Never written after that.
const MemDevice& base_image(BaseImage kind);
// The file of the base images whose xattrs span several blocks (an XIDX
// index and its XDAT members).
constexpr const char* kManyXattrsFile = "many_xattrs";

// Input layout (all fields little-endian, missing bytes read as 0):
//   u8 flags (kFlag* below)
//   then up to kMaxPatches patches, each:
//     u8 selector | u16 block | u16 offset | u8 length | length+1 bytes
//   selector bit 7 set: block is taken modulo the device size (any
//   block); else bit 6 set: block names an inode (1 + block % 160) and the
//   offset falls inside its 256-byte record; else: block indexes the
//   blocks of the base image that are not all zero (metadata, journal,
//   data), where mutations find decoders.
constexpr uint8_t kFlagCrashedImage = 1u << 0;  // else the clean image
constexpr uint8_t kFlagNoReseal = 1u << 1;      // leave checksums stale
constexpr uint8_t kFlagReadOnly = 1u << 2;      // mount read-only
constexpr uint8_t kFlagWrites = 1u << 3;        // also create/write/rename/unlink
constexpr size_t kMaxPatches = 64;

// A mutated copy of a base image: writes (the patches, and whatever a
// mount or fsck writes) land in memory; the base image is never changed.
class PatchedImage {
 public:
  PatchedImage(const uint8_t* data, size_t size);
  BlockDevice& device() { return *overlay_; }
  uint8_t flags() const { return flags_; }

 private:
  uint8_t flags_ = 0;
  std::unique_ptr<OverlayDevice> overlay_;
};

// Walks the whole tree through the engine API as the kernel would: readdir
// (every entry), lookup, getattr, read (the first pages and the last),
// readlink, listxattr/getxattr, then forgets every lookup. Bounded: at most
// `max_inodes` inodes, depth 16. Errors are fine; crashes are not.
void walk_tree(Filesystem& fs, size_t max_inodes = 200);

// A few changes through the engine (create, write, mkdir, rename, unlink,
// setxattr), each allowed to fail: on a corrupt image the point is that
// they fail cleanly.
void change_tree(Filesystem& fs);

}  // namespace stablefs::fuzz
