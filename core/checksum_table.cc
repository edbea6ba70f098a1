#include "core/checksum_table.h"

#include <atomic>

#include "core/base/endian.h"

namespace stablefs {

// Entries are 8-byte aligned inside the buffer (header 64 bytes), so reads
// and writes of one entry go through atomic_ref: a reader never sees a torn
// checksum while another block's entry in the same table block changes.
Result<uint64_t> ChecksumTable::get(uint64_t blocknr) {
  if (blocknr >= sb_.total_blocks) return err(EUCLEAN);
  auto buf = cache_.read(table_block(blocknr), kMagicChecksumTable);
  if (!buf.ok()) return Error{buf.error()};
  auto* slot = reinterpret_cast<uint64_t*>((*buf)->payload()) + blocknr % kChecksumsPerBlock;
  uint64_t raw = std::atomic_ref<uint64_t>(*slot).load(std::memory_order_acquire);
  return get_le64(reinterpret_cast<const uint8_t*>(&raw));
}

Status ChecksumTable::set(Handle& h, uint64_t blocknr, uint64_t checksum) {
  if (blocknr >= sb_.total_blocks) return err(EUCLEAN);
  auto buf = cache_.read(table_block(blocknr), kMagicChecksumTable);
  if (!buf.ok()) return Error{buf.error()};
  SFS_TRY(h.get_write_access(**buf));
  uint64_t raw;
  put_le64(reinterpret_cast<uint8_t*>(&raw), checksum);
  auto* slot = reinterpret_cast<uint64_t*>((*buf)->payload()) + blocknr % kChecksumsPerBlock;
  std::atomic_ref<uint64_t>(*slot).store(raw, std::memory_order_release);
  h.dirty_metadata(**buf);
  // The checksum is recorded because a data block was just written with
  // it: an async commit lists it for replay to verify.
  h.add_data_tag(blocknr, checksum);
  return Status::Ok();
}

}  // namespace stablefs
