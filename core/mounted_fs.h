// The engine behind the Filesystem API: one mounted stablefs.
//
// Lock order (outermost first):
//   rename_mu_ -> directory Inode::op (by ino) -> other Inode::op (by ino)
//   -> page locks -> journal handle (start) -> Inode::mu (by ino)
//   -> allocator / inode table / checksum table / buffer cache / page cache
//      index locks (leaf locks, never held while sleeping)
// A thread that holds a page lock never starts a handle; writeback first
// marks pages Writeback and unlocks them, then starts its handle.
//
// A call that fails leaves the in-memory state as it is stored (get, list
// and lookup never answer with a value that was not stored):
//  - an inode's new attributes are built in a copy and become n.disk only
//    once stored (store_inode(h, n, next)); xattr maps likewise;
//  - a change of several steps journals the inode records it will rewrite
//    before its first step (pin_inode), so the reads that can fail come
//    first; each directory step fails with nothing changed;
//  - what can still fail half done (a rename's second entry change) aborts
//    the journal, so the half-done change never commits.
// The lazily stored size and times of write() and atime (attrs_dirty) are
// the exception, as i_size is in the VFS: they are in memory first, by
// design. The times reach the journal with the next store of the inode;
// the size only as far as the data under it is stored (Inode::stored_size).
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "core/allocator.h"
#include "core/checksum_table.h"
#include "core/filesystem.h"
#include "core/inode.h"
#include "core/inode_flags.h"
#include "core/inode_table.h"
#include "core/page_cache.h"
#include "core/stats/live_counters.h"
#include "core/writeback_buffers.h"
#include "journal/buffer.h"
#include "journal/journal.h"

namespace stablefs {

class CountingDevice;
struct XattrSpace;

using InodeRef = std::shared_ptr<Inode>;

class MountedFs final : public Filesystem {
 public:
  MountedFs(std::unique_ptr<BlockDevice> dev, const MountOptions& opts);
  ~MountedFs() override;
  // why: see Filesystem::mount.
  Status start(std::string* why = nullptr);

  Status unmount() override;
  void forget(uint64_t ino, uint64_t n) override;

  Result<Attr> lookup(uint64_t parent, std::string_view name) override;
  Result<Attr> mknod(uint64_t parent, std::string_view name, uint32_t mode, uint64_t rdev,
                     const Creds& c) override;
  Result<Attr> mkdir(uint64_t parent, std::string_view name, uint32_t mode,
                     const Creds& c) override;
  Result<Attr> symlink(uint64_t parent, std::string_view name, std::string_view target,
                       const Creds& c) override;
  Result<std::string> readlink(uint64_t ino) override;
  Result<Attr> tmpfile(uint64_t parent, uint32_t mode, bool linkable, const Creds& c) override;
  Result<Attr> link(uint64_t ino, uint64_t new_parent, std::string_view new_name) override;
  Status unlink(uint64_t parent, std::string_view name) override;
  Status rmdir(uint64_t parent, std::string_view name) override;
  Status rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                std::string_view new_name, unsigned flags, const Creds& c) override;

  Result<Attr> getattr(uint64_t ino) override;
  Result<Attr> setattr(uint64_t ino, const SetAttr& sa) override;
  Result<FsStat> statfs() override;

  Status open(uint64_t ino, int flags) override;
  Result<size_t> read(uint64_t ino, uint64_t off, size_t size, char* out) override;
  Result<size_t> write(uint64_t ino, uint64_t off, const char* data, size_t size) override;
  Result<bool> kill_privileges(uint64_t ino, PrivilegeCaller& caller) override;
  Status shutdown() override;
  Result<uint64_t> trim(uint64_t start, uint64_t len, uint64_t min_len) override;
  bool shut_down() const override { return shut_down_.load(std::memory_order_relaxed); }
  void metadata_corruption_found() override;
  uint64_t sample_write_errors(uint64_t ino) override;
  Status flush(uint64_t ino, uint64_t* cursor = nullptr) override;
  Status fsync(uint64_t ino, bool datasync, uint64_t* cursor = nullptr) override;
  Status fallocate(uint64_t ino, int mode, uint64_t off, uint64_t len) override;
  Result<uint64_t> seek_data_hole(uint64_t ino, uint64_t off, int whence) override;
  Result<size_t> copy_file_range(uint64_t ino_in, uint64_t off_in, uint64_t ino_out,
                                 uint64_t off_out, size_t len) override;

  Status opendir(uint64_t ino) override;
  Status readdir(uint64_t ino, uint64_t after,
                 const std::function<bool(const DirListEntry&)>& emit) override;
  Status fsyncdir(uint64_t ino, bool datasync) override;

  Result<uint32_t> get_inode_flags(uint64_t ino) override;
  Status set_inode_flags(uint64_t ino, uint32_t fs_flags) override;

  Status setxattr(uint64_t ino, std::string_view name, std::string_view value,
                  int flags) override;
  Result<std::string> getxattr(uint64_t ino, std::string_view name) override;
  Result<std::string> listxattr(uint64_t ino) override;
  Status removexattr(uint64_t ino, std::string_view name) override;

 private:
  // ---- mount_fs.cc ----
  Status read_superblock(std::string* why);
  Status mount_failed(int code, std::string reason, std::string* why);
  Status write_superblocks();  // caller holds sb_mu_
  Result<ReplayResult> replay_log(JournalGeometry geo);
  Status persist_tail(JournalPosition tail);
  void discard_committed_frees(uint64_t txid);
  // The allocator's Allocator::RaiseMarks: initialises what the new marks
  // cover, then writes them to the superblocks (core/lazy_init.h).
  Status raise_marks(uint64_t inode_hwm, uint64_t block_hwm);
  // Sets an incompat feature bit (kIncompat*) in both superblocks, durably,
  // before the first structure that needs it is written; nothing if set.
  Status enable_incompat(uint32_t feature);
  Status cleanup_orphans();
  void flusher_main();

  // ---- inode_store.cc ----
  Result<InodeRef> get_inode(uint64_t ino);
  Status load_map(Inode& n);                 // n.mu held
  Status load_dir(Inode& n);                 // n.mu held
  Status store_inode(Handle& h, Inode& n);   // n.mu held
  // Stores `next` as n's record and, only once that succeeded, makes it
  // n.disk: n never holds attributes that were not stored. n.mu held.
  Status store_inode(Handle& h, Inode& n, DiskInode next);
  // Journals n's record as it is. Its inode-table block is then read (the
  // one step of a store that can fail while the journal works) and held by
  // the running transaction, so a later store of n in this handle fails
  // only once the journal has aborted and nothing commits anyway. A change
  // of several steps pins the inodes it will store before its first step.
  Status pin_inode(Handle& h, Inode& n) { return store_inode(h, n); }  // n.mu held
  // The size a store of `next` writes for n (see Inode::stored_size).
  static uint64_t size_to_store(const Inode& n, const DiskInode& next);
  // store_inode with the record's size given: writeback, once it mapped
  // data up to some offset, and fsync, once every page is written. n.mu held.
  Status store_inode_sized(Handle& h, Inode& n, DiskInode next, uint64_t size);
  // The stored size once data up to `written_end` is mapped. n.mu held.
  static uint64_t written_size(const Inode& n, uint64_t written_end);
  // Before an explicit growth of the size (truncate up, fallocate): data
  // written below the old size and not yet stored is written back first.
  // n.op held exclusively.
  Status write_back_below_size(Inode& n);
  // ---- attrs_fs.cc ----
  // Whether kill_privileges_locked(setid) would change anything (n.mu held).
  static bool has_privileges_to_kill(const Inode& n, uint32_t setid);
  Status kill_privileges_locked(Handle& h, Inode& n, DiskInode next, uint32_t setid);
  Status store_xattr_map(Handle& h, Inode& n, std::map<std::string, std::string> xs,
                         DiskInode next);  // n.mu held
  XattrSpace xattr_space();  // what store_xattrs allocates from (core/xattr_block.h)
  Attr to_attr(const Inode& n) const;        // n.mu held
  NodeAllocator node_allocator(uint64_t goal);
  // rdev for a device, parent for a directory.
  Result<InodeRef> new_inode(Handle& h, uint32_t mode, uint32_t uid, uint32_t gid,
                             uint64_t rdev, uint64_t parent);
  // Frees every block of n beyond `from_block` (file data, tree nodes when
  // everything goes), in bounded handles. n.op held exclusively.
  Status truncate_blocks(Inode& n, uint64_t from_block);
  // Releases an inode whose link count and kernel references are both 0.
  Status evict_inode(const InodeRef& n);
  void maybe_evict(const InodeRef& n);

  // ---- acl_fs.cc (POSIX ACLs; the rules are in its header comment) ----
  // set/removexattr of an ACL name; an empty value removes it.
  Status set_acl(uint64_t ino, std::string_view name, std::string_view value, int flags);
  // After a chmod of n: the access ACL follows the new mode. n.mu held.
  Status chmod_acl_locked(Handle& h, Inode& n, DiskInode& next);  // n.mu held
  // What a new node under `dir` inherits; applies the default ACL or else
  // the umask to *mode. dir.mu held.
  struct InheritedAcls {
    std::optional<std::string> access_acl, default_acl;
  };
  Result<InheritedAcls> inherit_acls_locked(Inode& dir, uint32_t* mode, uint32_t umask);
  Status store_inherited_acls(Handle& h, Inode& n, const InheritedAcls& acls);  // n.mu held
  Status store_one_xattr(Handle& h, Inode& n, DiskInode& next, std::string_view name,
                         const std::optional<std::string>& value);  // n.mu held

  // The frame of a change to one inode's metadata: `change(h, n)` runs
  // with n.op held exclusively, a journal handle h started (with `credits`,
  // Journal::start), then n.mu held.
  template <class Fn>
  Status change_inode(uint64_t ino, Fn&& change, uint64_t credits = 0) {
    auto nr = get_inode(ino);
    if (!nr.ok()) return Error{nr.error()};
    Inode& n = **nr;
    std::unique_lock op(n.op);
    Handle h = journal_->start(credits);
    std::lock_guard lk(n.mu);
    return change(h, n);
  }

  // ---- flags_fs.cc (chattr flags; enforcement is in its header comment) ----
  // EPERM when ino's flags forbid `what` (0 when ino is not there: the
  // call itself reports that). With `write_at`, a write at that offset,
  // which append-only allows at or past EOF.
  Status check_inode_flags(uint64_t ino, FlagCheck what,
                           std::optional<uint64_t> write_at = std::nullopt);
  // Removing (or renaming away) dir/name: the directory and the child.
  Status check_entry_removable(uint64_t dir, std::string_view name);
  bool has_sync_flag(Inode& n);  // chattr +S on a non-directory; takes n.mu
  Result<Attr> setattr_stored(uint64_t ino, const SetAttr& sa);  // setattr without +S's commit

  // ---- names_fs.cc ----
  // An empty name makes an O_TMPFILE inode: no entry, link count 0.
  Result<Attr> create_node(uint64_t parent, std::string_view name, uint32_t mode,
                           uint64_t rdev, const Creds& c, std::string_view symlink_target,
                           bool linkable = false);
  Result<Attr> lookup_by_id(uint64_t ino);  // "." by node id, any file type
  Result<InodeRef> child_of(Inode& dir, std::string_view name);
  Status drop_link(Handle& h, Inode& n);
  Status store_symlink_target(Handle& h, Inode& n, std::string_view target);  // n.mu held
  Status rename_locked(InodeRef& src_dir, std::string_view name, InodeRef& dst_dir,
                       std::string_view new_name, unsigned flags, const Creds& c);
  Result<InodeRef> new_whiteout(Handle& h, Inode& dir, const Creds& c);
  void abandon_new_inode(Handle& h, const InodeRef& n);
  struct RenamePlan;
  Result<RenamePlan> plan_rename(InodeRef& src_dir, std::string_view name, InodeRef& dst_dir,
                                 std::string_view new_name, unsigned flags);
  Status check_not_ancestor(uint64_t dir_ino, uint64_t into);
  Status apply_rename(Handle& h, const RenamePlan& p, std::string_view name,
                      std::string_view new_name, unsigned flags);
  Status abort_half_done(Status s, uint64_t dir_ino);
  Status fail_point(std::string_view step) { return step_hook_ ? step_hook_(step) : Status::Ok(); }
  Directory::GrowFn dir_grower(Inode& dir);

  // ---- data_fs.cc / writeback.cc ----
  Result<size_t> read_locked(Inode& n, uint64_t off, size_t size, char* out);
  struct StoredBlock {
    uint64_t phys = 0;      // 0: a hole or unwritten, reads as zeros
    uint64_t expected = 0;  // the checksum recorded for phys
    // A journaled rewrite of phys not yet at home: newer than the block.
    std::shared_ptr<const MetaBlock> image;
  };
  Result<StoredBlock> stored_block(Inode& n, uint64_t idx);  // n.mu held, map loaded
  bool verify_read(const Inode& n, uint64_t idx, const StoredBlock& b, const uint8_t* data);
  Status read_page(Inode& n, Page& page);    // page locked, fills it
  Result<std::vector<PageRef>> read_pages(Inode& n, uint64_t first, size_t count,
                                          size_t needed);
  static size_t read_run_pages(uint64_t idx, uint64_t last, uint64_t isize);
  Status truncate_locked(const InodeRef& n, uint64_t size);
  Status store_size(Inode& n, uint64_t size, bool whole = false);
  Status write_back_under(Inode& n, uint64_t size);  // before a truncate down; n.op held
  Status zero_range_in_cache(Inode& n, uint64_t off, uint64_t len);
  Result<PageRef> grab_stable_page(Inode& n, uint64_t idx, bool fill);
  Status unmap_range(Inode& n, uint64_t first, uint64_t count);
  Status preallocate(Inode& n, uint64_t first, uint64_t end);
 public:
  // Writes back dirty pages of one inode (all when max_pages == 0) and
  // journals their new mappings; waits for the I/O.
  Status writeback_inode(Inode& n, size_t max_pages);
  Status writeback_all();
  // writeback_all's work, also during a shutdown (which refuses the rest).
  Status write_back_everything();
  // writeback_all, a commit and a checkpoint: every block home, the log
  // empty (what unmount leaves, minus the unmount).
  Status checkpoint() {
    SFS_TRY(writeback_all());
    SFS_TRY(journal_->commit());
    return journal_->checkpoint();
  }
 private:
  // Stores n's attributes if they changed; `data_written`: its pages were
  // all written back (fsync), so the whole size may be stored.
  Status write_inode_if_dirty(Inode& n, bool data_written = false);
  void touch_atime(Inode& n);
  Status verify_written(Inode& n, const std::vector<PendingPage>& batch);
  // Writes back through the journal the pages of `batch` that are in short
  // runs over written blocks, and leaves the others in `batch`.
  void journal_rewrites(Inode& n, std::vector<PendingPage>& batch, std::vector<PendingPage>& rest);
  bool journal_data_enabled() const {
    return opts_.journal_data_pages > 0 && opts_.stable_pages != StablePages::kOff &&
           !opts_.verify_writes;
  }
  // The steps of writeback_inode, for one batch (see writeback.cc).
  void start_writeback(Inode& n, std::span<PageRef> found, WritebackBuffers& wb);
  Status write_batch(Inode& n, WritebackBuffers& wb);
  Status reserve_blocks(Inode& n, WritebackBuffers& wb);
  Status write_pages(Inode& n, WritebackBuffers& wb);
  Status journal_mapping(Inode& n, WritebackBuffers& wb);
  void end_writeback(std::vector<PendingPage>& batch, Status s);
  // Journals a batch's new mapping in h (bitmap, extent map, checksums,
  // old blocks freed); take_back_mapping undoes what it recorded. n.mu held.
  Status record_mapping(Handle& h, Inode& n, WritebackBuffers& wb, RecordedMapping& done);
  Status take_back_mapping(Handle& h, Inode& n, WritebackBuffers& wb,
                           const RecordedMapping& done);
  void redirty_pages(std::vector<PendingPage>& batch);
 public:
  // Test hook: runs after the checksums of a writeback batch are computed
  // and before its I/O is submitted (opens the write-after-checksum window).
  std::function<void(uint64_t ino)> writeback_hook_;
  // Test hook: a namespace change asks it before a step that follows an
  // earlier stored step (fail_point); an error it returns fails that step,
  // so a test reaches the undo and abort paths on purpose.
  std::function<Status(std::string_view step)> step_hook_;
  PageCacheStats page_cache_stats() const { return pages_->stats(); }
  JournalStats journal_stats() const { return journal_->stats(); }
  // Drops cached inodes nobody uses (kernel lookups 0, no InodeRef but the
  // cache's, attributes journalled) once the cache holds more than `low`.
  // Their state lives in metadata buffers, so a later get_inode() reloads
  // an identical object. The flusher calls it about once a second. Returns
  // how many it dropped.
  size_t trim_inode_cache(size_t low = kInodeCacheLow);
  static constexpr size_t kInodeCacheLow = 4096;
  uint64_t metadata_evictions() const { return cache_->evictions(); }
  size_t cached_metadata_blocks() const { return cache_->size(); }
  size_t cached_inodes() {
    std::lock_guard lk(icache_mu_);
    return icache_.size();
  }
  // The live counters (in the shared-memory segment when there is one).
  const LiveCounters& counters() const { return *c_; }
 private:

  Timespec now() const;

  std::unique_ptr<BlockDevice> dev_;
  // dev_ itself, or what an OverlayDevice in dev_ reads through: counts the
  // requests the backing store failed (publish_gauges).
  CountingDevice* counted_ = nullptr;
  MountOptions opts_;
  std::mutex sb_mu_;  // protects sb_ writes (superblock updates); leaf lock
  Superblock sb_;
  std::unique_ptr<BufferCache> cache_;
  std::unique_ptr<Allocator> alloc_;
  std::unique_ptr<InodeTable> itable_;
  std::unique_ptr<ChecksumTable> csums_;
  std::unique_ptr<PageCache> pages_;
  std::unique_ptr<Journal> journal_;
  // Preallocated per-batch writeback resources (the flusher and a few
  // concurrent fsyncs; more wait for a free set).
  std::unique_ptr<WritebackBufferPool> writeback_buffers_;

  std::mutex icache_mu_;  // protects icache_; leaf lock
  std::unordered_map<uint64_t, InodeRef> icache_;
  std::mutex rename_mu_;  // serialises renames (like the VFS rename mutex)
  std::mutex dirty_mu_;  // protects dirty_inodes_; leaf lock
  std::unordered_set<uint64_t> dirty_inodes_;  // inodes with attrs_dirty set

  // Protects flusher_stop_ and flusher_kicked_; a leaf lock (the flusher's
  // wait predicate reads only atomics under it).
  std::mutex flusher_mu_;
  std::condition_variable flusher_cv_;  // kicks the flusher only
  std::condition_variable stop_cv_;     // wakes the stats thread at unmount
  bool flusher_stop_ = false;
  bool flusher_kicked_ = false;  // a write since the flusher looked
  // The flag is set under flusher_mu_, so a kick cannot fall between the
  // flusher's look at it and its sleep: it is seen there, or its notify
  // finds the flusher asleep.
  void kick_flusher() {
    {
      std::lock_guard lk(flusher_mu_);
      flusher_kicked_ = true;
    }
    flusher_cv_.notify_one();
  }
  std::thread flusher_;
  bool mounted_ = false;

  // Live counters: in the shared-memory segment, or on the heap without one.
  std::unique_ptr<CountersSegment> segment_;
  std::unique_ptr<LiveCounters> heap_counters_;
  LiveCounters* c_ = nullptr;
  void publish_gauges();
  std::thread stats_thread_;  // refreshes gauges every 50 ms; stops with the flusher
  std::atomic<bool> read_only_{false};
  std::atomic<bool> shut_down_{false};
  std::atomic<bool> discard_failure_logged_{false};
  // Set once by metadata_corruption_found(): the errors= action was taken
  // (and logged); with remount-ro, read_only_ is set too, and unmount
  // still writes back and commits what was accepted before, but leaves the
  // image marked in use so that it gets checked.
  std::atomic<bool> corruption_seen_{false};
};

}  // namespace stablefs
