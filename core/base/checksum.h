// XXH3-64 checksums. Every block checksum is seeded with the block number,
// so a block written to the wrong place fails verification at its new home.
#pragma once

#include <cstddef>
#include <cstdint>

namespace stablefs {

uint64_t block_checksum(uint64_t blocknr, const void* data, size_t len);
uint64_t xxh3(const void* data, size_t len, uint64_t seed = 0);

}  // namespace stablefs
