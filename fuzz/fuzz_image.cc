#include "fuzz/fuzz_image.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/sysmacros.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "core/base/checksum.h"
#include "core/base/endian.h"
#include "core/base/format.h"
#include "core/mkfs.h"
#include "fuzz/fuzz_check.h"
#include "fuzz/fuzz_input.h"
#include "journal/buffer.h"

namespace stablefs::fuzz {
namespace {

[[noreturn]] void die(const char* what, int error) {
  std::fprintf(stderr, "fuzz_image: cannot build the base image: %s (errno %d)\n", what, error);
  std::abort();
}

template <class R>
auto must(R r, const char* what) {
  if (!r.ok()) die(what, r.error());
  return std::move(*r);
}
void must_ok(Status s, const char* what) {
  if (!s.ok()) die(what, s.error());
}

uint64_t create_file(Filesystem& fs, uint64_t parent, const std::string& name) {
  return must(fs.mknod(parent, name, S_IFREG | 0644, 0, {}), name.c_str()).ino;
}

void write_pages(Filesystem& fs, uint64_t ino, uint64_t first_page, size_t pages, char fill) {
  std::string page(kBlockSize, fill);
  for (size_t i = 0; i < pages; i++)
    must(fs.write(ino, (first_page + i) * kBlockSize, page.data(), page.size()), "write");
}

// Every on-disk structure at least once: directory blocks (several, in a
// directory of 120 names), inline and tree extent maps (a fragmented file
// with more than 9 extents, a sparse one deep enough for index nodes),
// inline and block symlinks, an xattr block and a set of several (an
// index and its members), special files, hard links.
void populate(Filesystem& fs) {
  const uint64_t root = kRootIno;
  uint64_t d = must(fs.mkdir(root, "dir", 0755, {}), "mkdir").ino;
  for (int i = 0; i < 120; i++)
    create_file(fs, d, "entry_with_a_longish_name_" + std::to_string(i));
  uint64_t sub = must(fs.mkdir(d, "sub", 0700, {}), "mkdir sub").ino;
  uint64_t deeper = must(fs.mkdir(sub, "deeper", 0700, {}), "mkdir deeper").ino;

  uint64_t small = create_file(fs, root, "small");
  must(fs.write(small, 0, "hello, fuzzer\n", 14), "write small");
  uint64_t three = create_file(fs, deeper, "three_pages");
  write_pages(fs, three, 0, 3, 't');
  uint64_t frag = create_file(fs, root, "fragmented");
  for (int i = 0; i < 24; i++) write_pages(fs, frag, 2 * i, 1, char('a' + i));
  uint64_t sparse = create_file(fs, root, "sparse");
  write_pages(fs, sparse, 0, 1, 's');
  write_pages(fs, sparse, (1ull << 30) / kBlockSize, 1, 'S');  // 1 GiB: index nodes
  must_ok(fs.fallocate(small, FALLOC_FL_KEEP_SIZE, 0, 8 * kBlockSize), "fallocate");

  must(fs.symlink(root, "short_link", "small", {}), "symlink");
  must(fs.symlink(d, "long_link", std::string(300, 'L'), {}), "long symlink");
  must_ok(fs.setxattr(small, "user.one", "1", 0), "setxattr");
  must_ok(fs.setxattr(small, "user.big", std::string(1500, 'x'), 0), "setxattr big");
  uint64_t many = create_file(fs, root, kManyXattrsFile);
  for (int i = 0; i < 40; i++)
    must_ok(fs.setxattr(many, "user.x" + std::to_string(i), std::string(200, char('a' + i % 26)), 0),
            "setxattr many");
  must_ok(fs.fsync(many, false), "fsync many");
  must(fs.mknod(root, "fifo", S_IFIFO | 0600, 0, {}), "mkfifo");
  must(fs.mknod(root, "chr", S_IFCHR | 0600, makedev(1, 3), {}), "mknod chr");
  must(fs.link(three, root, "hardlink"), "link");
  for (uint64_t ino : {three, frag, sparse, small}) must_ok(fs.fsync(ino, false), "fsync");
  must_ok(fs.fsyncdir(d, false), "fsyncdir");
}

// More changes after the clean image's contents, committed to the log but
// never checkpointed: the crashed image's replay has work to do.
void change_after_checkpoint(Filesystem& fs) {
  uint64_t late = create_file(fs, kRootIno, "late");
  write_pages(fs, late, 0, 2, 'z');
  must_ok(fs.fsync(late, false), "fsync late");
  must_ok(fs.unlink(kRootIno, "fifo"), "unlink");
  must_ok(fs.rename(kRootIno, "small", kRootIno, "renamed", 0, Creds{}), "rename");
  must_ok(fs.fsyncdir(kRootIno, false), "fsyncdir root");
}

std::unique_ptr<MemDevice> make_image(BaseImage kind) {
  auto dev = std::make_unique<MemDevice>(kMinBlocks);
  must_ok(make_filesystem(*dev, {}), "mkfs");
  MountOptions o;
  o.cache_bytes = 4 << 20;
  auto cut = std::make_unique<SharedDevice>(*dev);
  SharedDevice* live = cut.get();
  auto fs = must(Filesystem::mount(std::move(cut), o), "mount");
  populate(*fs);
  if (kind == BaseImage::kCrashed) {
    change_after_checkpoint(*fs);
    live->cut();
    dev->crash();
  }
  // After a cut every write fails and reaches nothing; unmount then only
  // stops the threads.
  Status s = fs->unmount();
  if (kind == BaseImage::kClean) must_ok(s, "unmount");
  return dev;
}

struct Base {
  std::unique_ptr<MemDevice> dev;
  Superblock sb;
  std::vector<uint64_t> used;  // blocks that are not all zero
};

const Base& base(BaseImage kind) {
  static Base images[2];
  static std::once_flag once[2];
  int i = kind == BaseImage::kClean ? 0 : 1;
  std::call_once(once[i], [&] {
    Base& b = images[i];
    b.dev = make_image(kind);
    std::vector<uint8_t> sb0 = b.dev->durable_block(kSuperblockA);
    b.sb = must(decode_superblock(sb0.data(), kSuperblockA, b.dev->block_count(), nullptr),
                "superblock");
    for (uint64_t n = 0; n < b.dev->block_count(); n++) {
      std::vector<uint8_t> blk = b.dev->durable_block(n);
      for (uint8_t c : blk)
        if (c != 0) {
          b.used.push_back(n);
          break;
        }
    }
  });
  return images[i];
}

// What a block of the base image is, so its patched copy can be re-sealed.
// A metadata block verifies against the block number in its own header:
// home blocks name themselves, journal copies name their home.
void reseal(const Base& b, uint64_t nr, const std::vector<uint8_t>& orig, uint8_t* blk,
            std::map<uint64_t, std::vector<uint8_t>>& patched, BlockDevice& dev) {
  if (nr == kSuperblockA || nr == kSuperblockB) {
    put_le64(blk + kBlockSize - 8, block_checksum(nr, blk, kBlockSize - 8));
    return;
  }
  uint64_t named = decode_meta_header(orig.data()).blocknr;
  if (verify_meta_block(orig.data(), named, 0).ok()) {
    put_le64(blk + kChecksumOffset, compute_meta_checksum(blk, named));
    return;
  }
  // A data block whose table entry matches its original bytes: record the
  // new bytes' checksum (the table block is re-sealed in turn).
  if (nr < b.sb.data_start) return;
  uint64_t table = b.sb.csum_table_start + nr / kChecksumsPerBlock;
  auto it = patched.find(table);
  if (it == patched.end()) {
    std::vector<uint8_t> t(kBlockSize);
    AlignedBlock a;
    if (!dev.read(table, a.data(), kBlockSize).ok()) return;
    t.assign(a.data(), a.data() + kBlockSize);
    it = patched.emplace(table, std::move(t)).first;
  }
  uint8_t* slot = it->second.data() + kMetaHeaderSize + (nr % kChecksumsPerBlock) * 8;
  if (get_le64(slot) != block_checksum(nr, orig.data(), kBlockSize)) return;
  put_le64(slot, block_checksum(nr, blk, kBlockSize));
  put_le64(it->second.data() + kChecksumOffset, compute_meta_checksum(it->second.data(), table));
}

}  // namespace

const MemDevice& base_image(BaseImage kind) { return *base(kind).dev; }

// The populated image uses about 140 inodes.
constexpr uint64_t kInodesPatched = 160;

PatchedImage::PatchedImage(const uint8_t* data, size_t size) {
  Input in(data, size);
  flags_ = in.u8();
  const Base& b = base(flags_ & kFlagCrashedImage ? BaseImage::kCrashed : BaseImage::kClean);
  overlay_ = std::make_unique<OverlayDevice>(const_cast<MemDevice&>(*b.dev));

  std::map<uint64_t, std::vector<uint8_t>> patched;  // blocknr -> new bytes
  for (size_t i = 0; i < kMaxPatches && !in.done(); i++) {
    uint8_t sel = in.u8();
    uint16_t blk = in.u16();
    uint16_t off = in.u16() % kBlockSize;
    size_t len = size_t(in.u8()) + 1;
    uint64_t nr;
    if (sel & 0x80) {
      nr = blk % b.dev->block_count();
    } else if (sel & 0x40) {
      // Inside one inode record: most of the tree's interesting state
      // (sizes, modes, link counts, extent roots, xattr pointers) is
      // there, and a random offset rarely lands in the right one.
      uint64_t ino = 1 + blk % kInodesPatched;
      nr = inode_block(b.sb, ino);
      off = uint16_t(kMetaHeaderSize + inode_slot(ino) * kInodeSize + off % kInodeSize);
    } else {
      nr = b.used[blk % b.used.size()];
    }
    auto it = patched.find(nr);
    if (it == patched.end()) it = patched.emplace(nr, b.dev->durable_block(nr)).first;
    for (size_t j = 0; j < len && off + j < kBlockSize; j++) it->second[off + j] = in.u8();
  }
  if (!(flags_ & kFlagNoReseal)) {
    // Data blocks first: re-sealing one changes its checksum-table block,
    // which is then re-sealed with the metadata (std::map: table blocks
    // come before data blocks, so walk the data blocks explicitly first).
    std::vector<uint64_t> order;
    for (auto& [nr, bytes] : patched)
      if (nr >= b.sb.data_start) order.push_back(nr);
    for (auto& [nr, bytes] : patched)
      if (nr < b.sb.data_start) order.push_back(nr);
    for (uint64_t nr : order) {
      std::vector<uint8_t> orig = b.dev->durable_block(nr);
      reseal(b, nr, orig, patched[nr].data(), patched, *overlay_);
    }
  }
  AlignedBlock a;
  for (auto& [nr, bytes] : patched) {
    std::memcpy(a.data(), bytes.data(), kBlockSize);
    (void)overlay_->write(nr, a.data(), kBlockSize);
  }
}

namespace {

void visit(Filesystem& fs, uint64_t ino, int depth, size_t max_inodes, size_t& seen,
           std::map<uint64_t, uint64_t>& lookups) {
  auto a = fs.getattr(ino);
  if (!a.ok()) return;
  uint32_t type = a->mode & S_IFMT;
  if (type == S_IFREG) {
    // A READ is all or nothing (issue 11): a reply shorter than asked
    // inside the file is end of file to the kernel, a silent truncation.
    auto read_whole = [&](uint64_t off, size_t len) {
      std::vector<char> buf(len);
      auto r = fs.read(ino, off, len, buf.data());
      if (r.ok()) FUZZ_CHECK(*r == (off >= a->size ? 0 : std::min<uint64_t>(len, a->size - off)));
    };
    if (fs.open(ino, O_RDONLY).ok()) {
      read_whole(0, 4 * kBlockSize);
      if (a->size > 4 * kBlockSize) read_whole(a->size - kBlockSize - 100, kBlockSize + 100);
      (void)fs.seek_data_hole(ino, 0, SEEK_DATA);
      (void)fs.seek_data_hole(ino, 0, SEEK_HOLE);
    }
  } else if (type == S_IFLNK) {
    // Never an empty or shortened target: the whole target or an error.
    auto target = fs.readlink(ino);
    if (target.ok()) FUZZ_CHECK(target->size() == a->size && !target->empty());
  }
  auto names = fs.listxattr(ino);
  if (names.ok()) {
    const std::string& all = *names;
    for (size_t p = 0; p < all.size();) {
      size_t end = all.find('\0', p);
      if (end == std::string::npos) end = all.size();
      (void)fs.getxattr(ino, std::string_view(all).substr(p, end - p));
      p = end + 1;
    }
  }
  if (type != S_IFDIR || depth >= 16 || !fs.opendir(ino).ok()) return;
  std::vector<DirListEntry> entries;
  (void)fs.readdir(ino, 0, [&](const DirListEntry& e) {
    entries.push_back(e);
    return entries.size() < 400;
  });
  for (const DirListEntry& e : entries) {
    if (e.name == "." || e.name == "..") continue;
    if (++seen > max_inodes) return;
    auto child = fs.lookup(ino, e.name);
    if (!child.ok()) continue;
    lookups[child->ino]++;
    visit(fs, child->ino, depth + 1, max_inodes, seen, lookups);
  }
}

}  // namespace

void walk_tree(Filesystem& fs, size_t max_inodes) {
  std::map<uint64_t, uint64_t> lookups;
  size_t seen = 0;
  (void)fs.statfs();
  visit(fs, kRootIno, 0, max_inodes, seen, lookups);
  for (auto [ino, n] : lookups) fs.forget(ino, n);
}

void change_tree(Filesystem& fs) {
  std::map<uint64_t, uint64_t> lookups;
  auto f = fs.mknod(kRootIno, "fuzz_new", S_IFREG | 0644, 0, {});
  if (f.ok()) {
    lookups[f->ino]++;
    std::string page(2 * kBlockSize + 7, 'n');
    (void)fs.write(f->ino, 0, page.data(), page.size());
    (void)fs.setxattr(f->ino, "user.fuzz", "v", 0);
    (void)fs.fsync(f->ino, false);
  }
  auto d = fs.lookup(kRootIno, "dir");
  if (d.ok()) {
    lookups[d->ino]++;
    auto m = fs.mkdir(d->ino, "fuzz_dir", 0755, {});
    if (m.ok()) lookups[m->ino]++;
    (void)fs.rename(d->ino, "entry_with_a_longish_name_7", kRootIno, "moved", 0, Creds{});
    (void)fs.unlink(d->ino, "entry_with_a_longish_name_9");
    (void)fs.rmdir(d->ino, "sub");
  }
  // A multi-block xattr set grown past another member, and shrunk.
  auto many = fs.lookup(kRootIno, kManyXattrsFile);
  if (many.ok()) {
    lookups[many->ino]++;
    (void)fs.setxattr(many->ino, "user.fuzz_big", std::string(5000, 'f'), 0);
    (void)fs.removexattr(many->ino, "user.x3");
  }
  auto frag = fs.lookup(kRootIno, "fragmented");
  if (frag.ok()) {
    lookups[frag->ino]++;
    SetAttr sa;
    sa.size = 5 * kBlockSize;
    (void)fs.setattr(frag->ino, sa);
    (void)fs.fallocate(frag->ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, kBlockSize,
                       kBlockSize);
  }
  (void)fs.unlink(kRootIno, "sparse");
  (void)fs.fsyncdir(kRootIno, false);
  for (auto [ino, n] : lookups) fs.forget(ino, n);
}

}  // namespace stablefs::fuzz
