// Judging one crash image: fsck --scrub finds nothing, the engine mounts
// it (replaying the journal), every file reads without error, every
// durable (path, content) pair reads back exactly, the engine unmounts
// cleanly and fsck still finds nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/io/block_device.h"
#include "tests/crash/durability_oracle.h"

namespace stablefs::crash {

struct ImageVerdict {
  std::string inconsistency;   // "" when fsck, mount, walk and unmount all passed
  std::string lost;            // "" when every durable pair read back exactly
  uint64_t pairs_checked = 0;  // durable (path, content) pairs verified
  uint64_t bytes_checked = 0;  // fsync'd bytes among them
  uint64_t replayed = 0;       // journal transactions fsck replayed
  uint64_t discarded = 0;      // async commits replay discarded (data not on disk)
  // fsck found one superblock copy torn (the other valid) and rewrote it:
  // what a crash during a superblock update leaves; counted, not an error.
  uint64_t damaged_superblock_copies = 0;

  bool ok() const { return inconsistency.empty() && lost.empty(); }
};

// `make_image` is called twice: one copy for fsck (which replays in place),
// one for the mount. `pos` is the crash point's log position.
ImageVerdict check_crash_image(const std::function<std::unique_ptr<BlockDevice>()>& make_image,
                               const std::vector<Expectation>& expectations, size_t pos);

}  // namespace stablefs::crash
