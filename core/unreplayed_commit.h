// After replay: was the transaction replay stopped in written up to its
// commit block? Replay stops at the first block that fails verification,
// which is how the end of the log looks after a crash; but a commit block
// of that very transaction further on says it was written whole, and a
// block of it was damaged afterwards (or, under async commit, reached the
// disk out of order in a crash before the commit's fsync returned). Its
// changes are then not replayed, and fsck and the mount say so.
//
// Reads the log only (headers of up to 8192 blocks); decides nothing.
#pragma once

#include <cstdint>
#include <optional>

#include "core/base/result.h"
#include "core/io/block_device.h"
#include "journal/journal.h"

namespace stablefs {

struct UnreplayedCommit {
  uint64_t txid = 0;
  uint64_t block = 0;   // the commit block's block number
  bool sealed = false;  // it verifies (else only its magic and txid are right)
  bool async = false;   // its flags say async commit (one flush, no barrier before it)
};

// Looks for a block with the commit magic and txid head.txid after `head`
// (where replay stopped) that counts exactly the blocks between head and
// itself. With `only_if_started`, first checks that the
// block at head carries that txid or that replay stopped inside a
// transaction (`stopped_inside`), and otherwise reads nothing more: the
// cheap test a mount can afford on every start.
Result<std::optional<UnreplayedCommit>> find_unreplayed_commit(BlockDevice& dev,
                                                               JournalGeometry geo,
                                                               JournalPosition head,
                                                               bool stopped_inside,
                                                               bool only_if_started);

}  // namespace stablefs
