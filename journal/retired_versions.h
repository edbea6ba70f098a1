// Safe reclamation of replaced MetaBuffer versions for lock-free readers.
//
// A shadow copy replaces a buffer's live version while readers that use no
// journal call (ChecksumTable::get, say) may still be reading the old one
// through a raw pointer. Every MetaBuffer::data() call therefore publishes
// the version it returns in one of this thread's hazard slots (a small
// ring: the kHazardSlots most recent versions this thread asked for stay
// protected), and a replaced version is only retired here, never freed
// directly. reclaim_retired_versions() frees the retired versions that no
// thread's slots name. This is the classic hazard-pointer scheme (Michael,
// 2004) with implicit release: a slot is reused kHazardSlots data() calls
// later, which is why readers must not hold more than that many versions'
// pointers at once without a lock the writers also take.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>

namespace stablefs {

struct MetaBlock;

constexpr size_t kHazardSlots = 8;

// The version `live` names, protected for this thread until its next
// kHazardSlots calls. Lock-free.
MetaBlock* protect_live_version(const std::atomic<MetaBlock*>& live);
// Hands over a version that is no longer live (or whose buffer is going
// away); it is freed by a later reclaim once no hazard slot names it.
void retire_version(std::shared_ptr<MetaBlock> b);
// Frees every retired version no thread protects. The commit thread calls
// it after each commit and checkpoint; retire_version() calls it too once
// enough versions have piled up.
void reclaim_retired_versions();
// Retired versions not yet freed (for tests).
size_t retired_version_count();

}  // namespace stablefs
