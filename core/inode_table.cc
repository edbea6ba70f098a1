#include "core/inode_table.h"

namespace stablefs {

Result<DiskInode> InodeTable::read(uint64_t ino) {
  if (!valid(ino)) return err(EINVAL);
  if (ino > hwm_.load(std::memory_order_acquire)) return DiskInode{};
  auto buf = cache_.read(inode_block(sb_, ino), kMagicInodeTable);
  if (!buf.ok()) return Error{buf.error()};
  uint64_t blk = inode_block(sb_, ino);
  std::lock_guard lk(stripes_[blk % stripes_.size()]);
  return decode_inode((*buf)->payload() + inode_slot(ino) * kInodeSize);
}

Status InodeTable::write(Handle& h, uint64_t ino, const DiskInode& inode) {
  if (!valid(ino) || ino > hwm_.load(std::memory_order_acquire)) return err(EINVAL);
  uint64_t blk = inode_block(sb_, ino);
  auto buf = cache_.read(blk, kMagicInodeTable);
  if (!buf.ok()) return Error{buf.error()};
  SFS_TRY(h.get_write_access(**buf));
  {
    std::lock_guard lk(stripes_[blk % stripes_.size()]);
    encode_inode((*buf)->payload() + inode_slot(ino) * kInodeSize, inode);
  }
  h.dirty_metadata(**buf);
  return Status::Ok();
}

}  // namespace stablefs
