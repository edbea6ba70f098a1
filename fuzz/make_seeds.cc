// Writes the seed corpora of every fuzzer into OUTDIR/<fuzzer>/, so no
// binary blobs live in the tree: make_seeds OUTDIR. Each seed is a valid
// (or nearly valid) input in the fuzzer's own input layout (see the
// comment at the top of each fuzzer), from which mutation starts.
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/base/endian.h"
#include "core/base/format.h"
#include "fuzz/fuzz_image.h"
#include "journal/format.h"

using namespace stablefs;

namespace {

using Bytes = std::vector<uint8_t>;

void u8(Bytes& b, uint8_t v) { b.push_back(v); }
void u16(Bytes& b, uint16_t v) {
  u8(b, uint8_t(v));
  u8(b, uint8_t(v >> 8));
}
void u32(Bytes& b, uint32_t v) {
  u16(b, uint16_t(v));
  u16(b, uint16_t(v >> 16));
}
void u64(Bytes& b, uint64_t v) {
  u32(b, uint32_t(v));
  u32(b, uint32_t(v >> 32));
}
void raw(Bytes& b, const void* p, size_t n) {
  auto* c = static_cast<const uint8_t*>(p);
  b.insert(b.end(), c, c + n);
}

std::string g_out;
int g_written = 0;

void emit(const std::string& fuzzer, const std::string& name, const Bytes& b) {
  std::string dir = g_out + "/" + fuzzer;
  mkdir(g_out.c_str(), 0755);
  mkdir(dir.c_str(), 0755);
  std::string path = dir + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(b.data(), 1, b.size(), f) != b.size() || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::exit(1);
  }
  g_written++;
}

void superblock_seeds() {
  for (uint64_t blocks : {kMinBlocks, uint64_t(10000), uint64_t(1) << 20}) {
    auto sb = plan_layout(blocks);
    if (!sb.ok()) std::exit(2);
    sb->journal_tail = 7;
    sb->sequence = 3;
    std::vector<uint8_t> blk(kBlockSize);
    encode_superblock(blk.data(), *sb, kSuperblockA);
    // The block is stored without its trailing zeros; the fuzzer pads.
    size_t len = kBlockSize;
    while (len > 0 && blk[len - 1] == 0) len--;
    len = std::min<size_t>(len, 256);
    Bytes b;
    u8(b, 0);  // reseal, primary copy
    u64(b, blocks);
    u64(b, blocks * 3);
    raw(b, blk.data(), len);
    emit("superblock", "sb-" + std::to_string(blocks), b);
  }
}

// Image fuzzers: the flags alone (the image as made), then one patch in
// each of the first used blocks (superblock, bitmaps, inode table...).
void image_seeds() {
  const uint8_t flag_sets[] = {0x00, 0x01, 0x04, 0x08, 0x09, 0x02};
  for (uint8_t flags : flag_sets) {
    Bytes b;
    u8(b, flags);
    emit("mount", "flags-" + std::to_string(flags), b);
    emit("fsck", "flags-" + std::to_string(flags), b);
  }
  for (uint16_t k = 0; k < 12; k++) {
    Bytes b;
    u8(b, k % 2 ? 0x01 : 0x08);
    u8(b, 0);      // selector: index into the used blocks
    u16(b, k);     // the k-th used block
    u16(b, 64 + 16 * k);  // just past the metadata header
    u8(b, 3);      // 4 bytes
    u32(b, 0xFFFFFFFF);
    emit("mount", "patch-" + std::to_string(k), b);
    emit("fsck", "patch-" + std::to_string(k), b);
  }
  // Inode records (selector bit 6): the size, link count and map depth
  // fields of the first inodes.
  for (uint16_t ino = 1; ino <= 8; ino++) {
    for (auto [field, value] : {std::pair{16, 0}, {12, 0}, {104, 3}}) {
      Bytes b;
      u8(b, 0x08);
      u8(b, 0x40);
      u16(b, uint16_t(ino - 1));
      u16(b, uint16_t(field));
      u8(b, 0);  // one byte
      u8(b, uint8_t(value));
      std::string name = "inode-" + std::to_string(ino) + "-at-" + std::to_string(field);
      emit("mount", name, b);
      emit("fsck", name, b);
    }
  }
}

// The image fuzzers, aimed at the multi-block xattr set of the clean base
// image: its index (set size, member count, hash, first member pointer)
// and each member's first records, found by their magics in the image
// the fuzzers build (block numbers fit the u16 block field of a patch).
void xattr_set_seeds() {
  const MemDevice& img = fuzz::base_image(fuzz::BaseImage::kClean);
  auto sb = decode_superblock(img.durable_block(kSuperblockA).data(), kSuperblockA,
                              img.block_count(), nullptr);
  if (!sb.ok()) std::exit(2);
  int found = 0;
  // From data_start: the log holds copies of the same blocks, not read
  // from a clean image.
  for (uint64_t nr = sb->data_start; nr < img.block_count() && nr <= 0xFFFF; nr++) {
    const uint32_t magic = decode_meta_header(img.durable_block(nr).data()).magic;
    if (magic != kMagicXattrIndex && magic != kMagicXattrData) continue;
    const bool index = magic == kMagicXattrIndex;
    const std::vector<std::pair<uint16_t, uint32_t>> fields =
        index ? std::vector<std::pair<uint16_t, uint32_t>>{{0, 9000}, {4, 1}, {4, 200}, {8, 0},
                                                            {16, 1}}
              : std::vector<std::pair<uint16_t, uint32_t>>{{0, 0xFFFFFFFF}, {4, 0}, {5, 70000}};
    for (auto [at, value] : fields) {
      for (uint8_t flags : {uint8_t(0x00), uint8_t(0x08)}) {
        Bytes b;
        u8(b, flags);
        u8(b, 0x80);  // the block number itself
        u16(b, uint16_t(nr));
        u16(b, uint16_t(kMetaHeaderSize + at));
        u8(b, 3);  // 4 bytes
        u32(b, value);
        std::string name = std::string(index ? "xattr-index-" : "xattr-member-") +
                           std::to_string(nr) + "-at-" + std::to_string(at) + "-flags-" +
                           std::to_string(flags);
        emit("mount", name, b);
        emit("fsck", name, b);
      }
    }
    found++;
  }
  if (found < 3) {
    std::fprintf(stderr, "make_seeds: the base image has no multi-block xattr set\n");
    std::exit(3);
  }
}

// journal_fuzzer programs: flags, tail pos, tail txid, then ops.
void journal_seeds() {
  auto txn = [](Bytes& b, uint8_t shape, uint8_t copies, uint8_t revokes, uint8_t tags) {
    u8(b, 0);  // op: transaction
    u8(b, shape);
    u8(b, copies);
    u8(b, revokes);
    u8(b, tags);
    for (int i = 0; i < copies; i++) u8(b, uint8_t(10 * i + 3));       // homes
    for (int i = 0; i < copies; i++) u8(b, uint8_t(0xA0 + i));         // a payload byte each
    for (int i = 0; i < revokes; i++) u8(b, uint8_t(10 * i + 50));     // revoked homes
    for (int i = 0; i < tags; i++) {
      u8(b, uint8_t(100 + i));
      u8(b, 0);
    }
  };
  Bytes one;
  u8(one, 0);
  u8(one, 0);
  u8(one, 1);
  txn(one, 0, 2, 0, 0);
  emit("journal", "one-txn", one);
  Bytes three;
  u8(three, 0);
  u8(three, 60);  // wraps around the end of the log
  u8(three, 5);
  txn(three, 0, 3, 1, 0);
  txn(three, 0, 1, 0, 0);
  txn(three, 1, 2, 0, 2);  // async, with data tags
  emit("journal", "three-txns-wrapping", three);
  Bytes torn = one;
  txn(torn, 0x0E, 1, 0, 0);  // no commit block
  emit("journal", "torn-second", torn);
}

void directory_seeds() {
  Bytes b;
  u8(b, 0);
  u8(b, 2);
  for (int blk = 0; blk < 2; blk++) {
    Bytes payload;
    for (int i = 0; i < 5; i++) {
      std::string name = "name" + std::to_string(blk) + "_" + std::to_string(i);
      u64(payload, 10 + i);
      u8(payload, kTypeReg);
      u8(payload, uint8_t(name.size()));
      raw(payload, name.data(), name.size());
    }
    u64(payload, 0);
    u16(b, uint16_t(payload.size()));
    raw(b, payload.data(), payload.size());
  }
  // add "x", remove "name0_1", replace "name1_2"
  for (auto [op, name] : {std::pair{0, "x"}, {1, "name0_1"}, {2, "name1_2"}}) {
    u8(b, uint8_t(op));
    u8(b, uint8_t(std::strlen(name)));
    raw(b, name, std::strlen(name));
    u8(b, 9);
  }
  emit("directory", "two-blocks", b);
}

void extent_seeds() {
  auto entry = [](Bytes& b, uint32_t logical, uint32_t len, uint64_t phys) {
    u32(b, logical);
    u32(b, len);
    u64(b, phys);
  };
  // Inline: three extents, then a few operations.
  Bytes in;
  u8(in, 0);
  u8(in, 3);
  Bytes root;
  entry(root, 0, 4, 500);
  entry(root, 10, 2, 600);
  entry(root, 20, 1, 700);
  root.resize(kInodeRootSize);
  raw(in, root.data(), root.size());
  u8(in, 0);  // no nodes
  for (int i = 0; i < 4; i++) {
    u8(in, uint8_t(i));
    u32(in, uint32_t(5 * i));
    u16(in, 3);
    u16(in, uint16_t(100 * i));
  }
  emit("extent_map", "inline", in);
  // Depth 1: root pointer to one leaf at block 140 covering [0, 128).
  Bytes tree;
  u8(tree, 1);
  u8(tree, 0);
  Bytes r;
  u64(r, 140);
  r.resize(kInodeRootSize);
  raw(tree, r.data(), r.size());
  u8(tree, 1);
  u8(tree, 0);  // leaf, right owner
  Bytes leaf;
  u64(leaf, 0);  // first logical
  u16(leaf, 2);  // count
  leaf.resize(kNodeEntriesOffset);
  entry(leaf, 0, 8, 300);
  entry(leaf, 64, 8, 400);
  u16(tree, uint16_t(leaf.size()));
  raw(tree, leaf.data(), leaf.size());
  u8(tree, 0);
  u32(tree, 200);
  u16(tree, 4);
  u16(tree, 10);
  emit("extent_map", "one-leaf", tree);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds OUTDIR\n");
    return 2;
  }
  g_out = argv[1];
  superblock_seeds();
  image_seeds();
  xattr_set_seeds();
  journal_seeds();
  directory_seeds();
  extent_seeds();
  std::printf("make_seeds: %d seeds in %s\n", g_written, g_out.c_str());
  return 0;
}
