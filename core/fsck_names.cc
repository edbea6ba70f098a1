// fsck: the namespace. Every directory's entries are collected as its
// inode is met and judged once every inode is known: entries against the
// inodes they name, link counts and '..' pointers against the entries,
// and orphans (core/fsck_checker.h).
#include <sys/stat.h>

#include <algorithm>
#include <string>

#include "core/fsck_checker.h"

namespace stablefs::fsck_internal {

void Checker::check_directory(uint64_t ino, const DiskInode& d, const ExtentMap& map) {
  std::string who = "inode " + std::to_string(ino);
  res_.directories++;
  dotdot_[ino] = d.rdev ? d.rdev : kRootIno;
  std::vector<std::shared_ptr<MetaBuffer>> blocks;
  uint64_t nblocks = d.size / kBlockSize;
  if (d.size % kBlockSize) problem(who + ": directory size is not a whole number of blocks");
  for (uint64_t i = 0; i < nblocks; i++) {
    auto e = map.find(uint32_t(i));
    if (!e) {
      unreadable(who + ": directory block " + std::to_string(i) + " is not mapped");
      return;
    }
    auto buf = cache_.read(e->physical + (i - e->logical), kMagicDirectory);
    if (!buf.ok()) {
      unreadable(who + ": directory block " + std::to_string(e->physical + (i - e->logical)) +
                 " is corrupt");
      return;
    }
    blocks.push_back(*buf);
  }
  auto dir = Directory::load(ino, std::move(blocks));
  if (!dir.ok()) {
    unreadable(who + ": directory entries are corrupt");
    return;
  }
  (*dir)->list(0, [&](const DirEntry& e, uint64_t) {
    entries_.emplace_back(ino, e);
    return true;
  });
  plan_.dirs[ino] = std::move(*dir);
}

// Every entry against the inode it names, now that every inode is known:
// an entry that names no live inode goes (-y); the rest count as links,
// and their d_type must be the inode's (the S_IFMT bits shifted down,
// <dirent.h>).
void Checker::check_entries() {
  // (Plain names, not a structured binding: clang 14, the sanitizer
  // build's compiler, cannot capture one in a lambda.)
  for (const auto& entry : entries_) {
    const uint64_t dir = entry.first;
    const DirEntry& e = entry.second;
    std::string at = "inode " + std::to_string(dir) + ": entry '" + e.name + "'";
    if (in_unreadable_table(e.ino)) {  // its table block is reported
      refs_[e.ino]++;
      continue;
    }
    auto m = mode_.find(e.ino);
    if (m == mode_.end() || e.ino == kRootIno) {
      std::string why = e.ino == kRootIno ? "names the root directory"
                        : e.ino == 0 || e.ino > sb_.inode_count
                            ? "points to invalid inode " + std::to_string(e.ino)
                        : e.ino > sb_.inode_hwm
                            ? "points to inode " + std::to_string(e.ino) +
                                  ", above the inode high-water mark " +
                                  std::to_string(sb_.inode_hwm)
                            : "points to free inode " + std::to_string(e.ino);
      if (!fixable_if_complete(at + " " + why, false, [&](RepairPlan& p) {
            p.entries.push_back({dir, e.name, true, 0, 0});
          }))
        refs_[e.ino]++;  // left: it still counts (and root's count says so)
      continue;
    }
    const uint8_t type = uint8_t((m->second & S_IFMT) >> 12);
    if (e.type != type)
      fixable(at + " gives inode " + std::to_string(e.ino) + " type " + std::to_string(e.type) +
                  ", its mode says " + std::to_string(type),
              true, [&](RepairPlan& p) { p.entries.push_back({dir, e.name, false, e.ino, type}); });
    refs_[e.ino]++;
    if (type == kTypeDir) {
      subdirs_[dir]++;
      parent_[e.ino] = dir;
    }
  }
}

void Checker::check_links() {
  check_entries();
  for (const auto& link : nlink_) {
    const uint64_t ino = link.first;
    const uint32_t nlink = link.second;
    std::string who = "inode " + std::to_string(ino);
    bool dir = (mode_[ino] & S_IFMT) == S_IFDIR;
    uint32_t expect = dir ? 2 + subdirs_[ino] : refs_[ino];
    if (ino == kRootIno) {
      // An entry naming it is check_entries' to report.
    } else if (refs_[ino] == 0) {
      if (nlink == 0) {
        orphans_.push_back(ino);
      } else {
        // e2fsck would link it into lost+found, which stablefs has not.
        problem(who + ": in use but not in any directory");
      }
      continue;
    }
    if (dir && ino != kRootIno && refs_[ino] != 1)
      problem(who + ": directory has " + std::to_string(refs_[ino]) + " names");
    if (nlink != expect)
      fixable_if_complete(
          who + ": link count " + std::to_string(nlink) + ", should be " + std::to_string(expect),
          true, [&](RepairPlan& p) { p.inodes[ino].nlink = expect; });
    // dotdot_ holds only directories whose entries were read: of one that
    // could not be, '..' is unknown, not 0 (a repair of it never sticks).
    auto dd = dotdot_.find(ino);
    if (dir && ino != kRootIno && parent_.count(ino) && dd != dotdot_.end() &&
        dd->second != parent_[ino])
      fixable_if_complete(who + ": '..' names " + std::to_string(dd->second) +
                              " but it lives in " + std::to_string(parent_[ino]),
                          true, [&](RepairPlan& p) { p.inodes[ino].parent = parent_[ino]; });
  }
}

void Checker::clear_inode(uint64_t ino) {
  cleared_.insert(ino);
  auto& fix = plan_.inodes[ino];
  fix.clear = true;
  if (auto m = meta_blocks_.find(ino); m != meta_blocks_.end()) fix.meta_blocks = m->second;
  plan_.inode_bits[ino] = false;
}

// An inode with link count 0 in no directory was unlinked while open. A
// crash leaves it behind and the next read-write mount frees it (it frees
// orphans only after an unclean shutdown); a clean unmount frees it
// itself, so in a cleanly unmounted filesystem it is a leak nothing frees.
void Checker::check_orphans() {
  res_.orphans = orphans_.size();
  if (orphans_.empty()) return;
  if (sb_.state != kStateClean) {
    note(std::to_string(orphans_.size()) +
         " orphaned inodes (link count 0, unlinked while open when the filesystem went "
         "down): the next read-write mount frees them");
    return;
  }
  std::sort(orphans_.begin(), orphans_.end());
  for (uint64_t ino : orphans_)
    fixable_if_complete(
        "inode " + std::to_string(ino) +
            ": link count 0 and in no directory in a cleanly unmounted filesystem: nothing "
            "will free it",
        true, [&](RepairPlan&) { clear_inode(ino); });
}

}  // namespace stablefs::fsck_internal
