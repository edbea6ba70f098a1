#include "core/base/checksum.h"

#include <xxhash.h>

namespace stablefs {

uint64_t block_checksum(uint64_t blocknr, const void* data, size_t len) {
  return XXH3_64bits_withSeed(data, len, blocknr);
}

uint64_t xxh3(const void* data, size_t len, uint64_t seed) {
  return XXH3_64bits_withSeed(data, len, seed);
}

}  // namespace stablefs
