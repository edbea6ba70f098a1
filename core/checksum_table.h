// Data checksums: one XXH3-64 per physical block, in the checksum table
// region, indexed by block number. A block's mapping and its checksum
// change in the same transaction, so after replay every mapped block has
// the checksum of the bytes that were written to it.
#pragma once

#include <cstdint>

#include "core/base/format.h"
#include "core/base/result.h"
#include "journal/buffer.h"
#include "journal/journal.h"

namespace stablefs {

class ChecksumTable {
 public:
  ChecksumTable(BufferCache& cache, const Superblock& sb) : cache_(cache), sb_(sb) {}

  Result<uint64_t> get(uint64_t blocknr);
  Status set(Handle& h, uint64_t blocknr, uint64_t checksum);

 private:
  uint64_t table_block(uint64_t blocknr) const {
    return sb_.csum_table_start + blocknr / kChecksumsPerBlock;
  }
  BufferCache& cache_;
  const Superblock& sb_;
};

}  // namespace stablefs
