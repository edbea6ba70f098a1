// Reading and damaging an unmounted image from tests: hashing it to prove
// a tool changed nothing, locating blocks through the superblock, flipping
// bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/base/format.h"

namespace stablefs::integ {

// XXH3-64 over the file's bytes plus its size; 0 when it can't be read.
uint64_t hash_file(const std::string& path);

// Reads block `blocknr` (kBlockSize bytes); empty on a short read.
std::vector<uint8_t> read_block(const std::string& path, uint64_t blocknr);
bool write_block(const std::string& path, uint64_t blocknr, const std::vector<uint8_t>& block);

// Inverts every bit of the byte at `offset`.
bool flip_byte(const std::string& path, uint64_t offset);

// The primary superblock, decoded and validated; nullopt (with *why) if bad.
std::optional<Superblock> load_superblock(const std::string& path, std::string* why);

// Blocks at or after `from` whose whole content equals `pattern` (kBlockSize).
std::vector<uint64_t> find_blocks_equal(const std::string& path, uint64_t from,
                                        const std::vector<uint8_t>& pattern);

// Blocks at or after `from` carrying a metadata header with `magic` and
// `owner` (0 = any owner).
std::vector<uint64_t> find_meta_blocks(const std::string& path, uint64_t from, uint32_t magic,
                                       uint64_t owner);

// A kBlockSize pattern that will not occur anywhere else by chance.
std::vector<uint8_t> unique_block_pattern(uint64_t seed);

}  // namespace stablefs::integ
