#include "tools/dump/image_reader.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstring>

#include "core/base/checksum.h"
#include "core/base/endian.h"
#include "core/io/open_device.h"

namespace stablefs {
namespace {

Error fail(std::string* why, int code, std::string text) {
  *why = std::move(text);
  return Error{code};
}

}  // namespace

Result<std::unique_ptr<ImageReader>> ImageReader::open(const std::string& path,
                                                       std::string* why) {
  OpenOptions oo;
  oo.read_only = true;
  oo.exclusive = false;  // a mounted image can be read too
  auto dev = open_device(path, oo);
  if (!dev.ok())
    return fail(why, dev.error(),
                path + ": " +
                    (dev.error() == ENOTBLK ? "neither an image file nor a block device"
                                            : std::strerror(dev.error())));
  std::unique_ptr<ImageReader> r(new ImageReader(std::move(*dev)));
  SFS_TRY(r->load(path, why));
  return r;
}

Status ImageReader::load(const std::string& path, std::string* why) {
  char real[PATH_MAX];
  // A mount's source is an image's canonical path, or an NBD URI as given.
  mounted_ = is_nbd_uri(path) ? is_mount_source(path)
                              : ::realpath(path.c_str(), real) && is_mount_source(real);
  auto copies = read_superblocks(*dev_, why);
  if (!copies.ok()) return fail(why, copies.error(), path + ": " + *why);
  copies_ = std::move(*copies);
  journal_.tail = {copies_.sb.journal_tail, copies_.sb.journal_tail_txid};
  // Into the overlay only: the image is never written.
  const Superblock& sb = copies_.sb;
  auto rep = replay_journal(overlay_, {sb.journal_start, sb.journal_blocks}, journal_.tail);
  if (!rep.ok())
    return fail(why, rep.error(),
                path + ": journal replay (in memory) failed: " + std::strerror(rep.error()));
  journal_.replay = std::move(*rep);
  return Status::Ok();
}

Result<DiskInode> ImageReader::inode(uint64_t ino, std::string* why) {
  if (ino == 0 || ino > copies_.sb.inode_count)
    return fail(why, EINVAL,
                "inode " + std::to_string(ino) + " is outside 1.." +
                    std::to_string(copies_.sb.inode_count));
  // Above the high-water mark the table was never written: the inode is free.
  if (ino > copies_.sb.inode_hwm) return DiskInode{};
  uint64_t nr = copies_.sb.inode_table_start + (ino - 1) / kInodesPerBlock;
  auto buf = cache_.read(nr, kMagicInodeTable);
  if (!buf.ok())
    return fail(why, buf.error(),
                "inode table block " + std::to_string(nr) + " fails verification");
  return decode_inode((*buf)->payload() + (ino - 1) % kInodesPerBlock * kInodeSize);
}

Result<bool> ImageReader::inode_in_use(uint64_t ino, std::string* why) {
  if (ino == 0 || ino > copies_.sb.inode_count)
    return fail(why, EINVAL, "inode " + std::to_string(ino) + " is out of range");
  if (ino > copies_.sb.inode_hwm) return false;  // above the mark: free, never written
  uint64_t nr = copies_.sb.inode_bitmap_start + ino / kBitsPerBitmapBlock;
  auto buf = cache_.read(nr, kMagicInodeBitmap);
  if (!buf.ok())
    return fail(why, buf.error(),
                "inode bitmap block " + std::to_string(nr) + " fails verification");
  uint64_t bit = ino % kBitsPerBitmapBlock;
  return bool((*buf)->payload()[bit / 8] >> (bit % 8) & 1);
}

Result<std::unique_ptr<ExtentMap>> ImageReader::extent_map(uint64_t ino, const DiskInode& d,
                                                           std::string* why) {
  if (d.flags & kInodeInlineData)
    return fail(why, ENODATA, "inode " + std::to_string(ino) + " keeps its data inline");
  auto map = ExtentMap::load(cache_, ino, d, copies_.sb.total_blocks);
  if (!map.ok())
    return fail(why, map.error(), "inode " + std::to_string(ino) + ": extent map is corrupt");
  return map;
}

Result<std::unique_ptr<Directory>> ImageReader::directory(uint64_t ino, const DiskInode& d,
                                                          std::string* why) {
  const std::string who = "inode " + std::to_string(ino);
  if ((d.mode & S_IFMT) != S_IFDIR) return fail(why, ENOTDIR, who + " is not a directory");
  auto map = extent_map(ino, d, why);
  if (!map.ok()) return Error{map.error()};
  std::vector<std::shared_ptr<MetaBuffer>> blocks;
  for (uint64_t i = 0; i < d.size / kBlockSize; i++) {
    auto e = (*map)->find(uint32_t(i));
    if (!e)
      return fail(why, EUCLEAN, who + ": directory block " + std::to_string(i) + " is not mapped");
    uint64_t nr = e->physical + (i - e->logical);
    auto buf = cache_.read(nr, kMagicDirectory);
    if (!buf.ok())
      return fail(why, buf.error(),
                  who + ": directory block " + std::to_string(nr) + " is corrupt");
    blocks.push_back(*buf);
  }
  auto dir = Directory::load(ino, std::move(blocks));
  if (!dir.ok()) return fail(why, dir.error(), who + ": directory entries are corrupt");
  return dir;
}

Result<uint64_t> ImageReader::recorded_checksum(uint64_t block, std::string* why) {
  if (block >= copies_.sb.total_blocks)
    return fail(why, EINVAL, "block " + std::to_string(block) + " is outside the device");
  uint64_t nr = copies_.sb.csum_table_start + block / kChecksumsPerBlock;
  auto buf = cache_.read(nr, kMagicChecksumTable);
  if (!buf.ok())
    return fail(why, buf.error(),
                "checksum table block " + std::to_string(nr) + " fails verification");
  return get_le64((*buf)->payload() + block % kChecksumsPerBlock * 8);
}

Result<uint64_t> ImageReader::actual_checksum(uint64_t block, std::string* why) {
  if (block >= copies_.sb.total_blocks)
    return fail(why, EINVAL, "block " + std::to_string(block) + " is outside the device");
  AlignedBlock buf;
  if (Status s = overlay_.read(block, buf.data(), kBlockSize); !s.ok())
    return fail(why, s.error(), "block " + std::to_string(block) + ": " + std::strerror(s.error()));
  return block_checksum(block, buf.data(), kBlockSize);
}

Result<uint64_t> ImageReader::resolve(const std::string& path, std::string* why) {
  if (path.empty() || path[0] != '/')
    return fail(why, EINVAL, "'" + path + "' is not an absolute path");
  uint64_t ino = kRootIno;
  size_t pos = 1;
  while (pos < path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string::npos) slash = path.size();
    std::string name = path.substr(pos, slash - pos);
    pos = slash + 1;
    if (name.empty() || name == ".") continue;
    auto d = inode(ino, why);
    if (!d.ok()) return Error{d.error()};
    if (name == "..") {
      if (ino != kRootIno) ino = d->parent();  // the root is its own parent
      continue;
    }
    auto dir = directory(ino, *d, why);
    if (!dir.ok()) return Error{dir.error()};
    auto e = (*dir)->lookup(name);
    if (!e) return fail(why, ENOENT, path + ": no entry '" + name + "'");
    ino = e->ino;
  }
  return ino;
}

}  // namespace stablefs
