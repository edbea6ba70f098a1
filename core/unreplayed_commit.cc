#include "core/unreplayed_commit.h"

#include <algorithm>

#include "core/base/format.h"
#include "journal/buffer.h"
#include "journal/format.h"

namespace stablefs {

Result<std::optional<UnreplayedCommit>> find_unreplayed_commit(BlockDevice& dev,
                                                               JournalGeometry geo,
                                                               JournalPosition head,
                                                               bool stopped_inside,
                                                               bool only_if_started) {
  if (geo.blocks < 2) return std::optional<UnreplayedCommit>{};
  AlignedBlock b;
  auto block_at = [&](uint64_t i) { return geo.start + (head.pos + i) % geo.blocks; };
  if (only_if_started && !stopped_inside) {
    SFS_TRY(dev.read(block_at(0), b.data(), kBlockSize));
    if (decode_meta_header(b.data()).txid != head.txid) return std::optional<UnreplayedCommit>{};
  }
  const uint64_t scan = std::min<uint64_t>(geo.blocks - 1, 8192);
  for (uint64_t i = 1; i < scan; i++) {
    const uint64_t nr = block_at(i);
    SFS_TRY(dev.read(nr, b.data(), kBlockSize));
    MetaHeader h = decode_meta_header(b.data());
    if (h.magic != kMagicJournalCommit || h.txid != head.txid) continue;
    // It must close a transaction that starts at head: the blocks before
    // it are exactly the i since head. A txid alone is not enough: a
    // superblock whose tail txid went back (corruption) leaves older log
    // blocks with the txids the mount then reuses.
    const CommitRecord c = decode_commit_block(b.data());
    if (c.log_blocks != i) continue;
    return std::optional<UnreplayedCommit>{
        UnreplayedCommit{head.txid, nr, verify_meta_block(b.data(), nr, kMagicJournalCommit).ok(),
                         (c.flags & kCommitAsync) != 0}};
  }
  return std::optional<UnreplayedCommit>{};
}

}  // namespace stablefs
