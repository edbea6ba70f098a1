#include "tools/superblock_copies.h"

#include <cstring>

#include "core/io/open_device.h"
#include "journal/buffer.h"

namespace stablefs {

Result<SuperblockCopies> read_superblocks(BlockDevice& dev, std::string* why) {
  AlignedBlock a, b;
  if (!dev.read(kSuperblockA, a.data(), kBlockSize).ok() ||
      !dev.read(kSuperblockB, b.data(), kBlockSize).ok()) {
    *why = "cannot read the superblocks";
    return err(EIO);
  }
  SuperblockCopies c;
  auto sa = decode_superblock(a.data(), kSuperblockA, dev.block_count(), &c.primary_problem);
  auto sbk = decode_superblock(b.data(), kSuperblockB, dev.block_count(), &c.backup_problem);
  c.primary_valid = sa.ok();
  c.backup_valid = sbk.ok();
  if (!sa.ok() && !sbk.ok()) {
    *why = "not a stablefs image, or both superblocks are corrupt (primary: " +
           c.primary_problem + "; backup: " + c.backup_problem + ")";
    return err(EUCLEAN);
  }
  c.sb = sa.ok() ? *sa : *sbk;
  return c;
}

Result<Superblock> read_superblock(const std::string& path, std::string* why) {
  OpenOptions oo;
  oo.read_only = true;
  oo.exclusive = false;  // the daemon of a live mount holds the lock
  auto dev = open_device(path, oo);
  if (!dev.ok()) {
    *why = path + ": " + std::strerror(dev.error());
    return Error{dev.error()};
  }
  auto c = read_superblocks(**dev, why);
  if (!c.ok()) {
    *why = path + ": " + *why;
    return Error{c.error()};
  }
  return c->sb;
}

}  // namespace stablefs
