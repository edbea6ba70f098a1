// Mount and unmount: superblock selection, journal replay, orphan cleanup,
// the background flusher.
#include <cstring>

#include "core/base/log.h"
#include "core/io/counting_device.h"
#include "core/io/overlay_device.h"
#include "core/mounted_fs.h"

#include "core/lazy_init.h"
#include "core/unreplayed_commit.h"

namespace stablefs {

Result<std::unique_ptr<Filesystem>> Filesystem::mount(std::unique_ptr<BlockDevice> dev,
                                                      const MountOptions& opts,
                                                      std::string* why) {
  auto fs = std::make_unique<MountedFs>(std::move(dev), opts);
  SFS_TRY(fs->start(why));
  return std::unique_ptr<Filesystem>(std::move(fs));
}

MountedFs::MountedFs(std::unique_ptr<BlockDevice> dev, const MountOptions& opts)
    : opts_(opts) {
  auto counted = std::make_unique<CountingDevice>(std::move(dev));
  counted_ = counted.get();
  dev_ = std::move(counted);
  read_only_ = opts.read_only;
  heap_counters_ = std::make_unique<LiveCounters>();
  c_ = heap_counters_.get();
}

MountedFs::~MountedFs() {
  {
    std::lock_guard lk(flusher_mu_);
    flusher_stop_ = true;
  }
  flusher_cv_.notify_all();
  stop_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  if (stats_thread_.joinable()) stats_thread_.join();
  // The journal's commit thread calls back into this object (on_commit,
  // on_abort touch c_ and alloc_), even after a failed unmount returned.
  // Stop it before any member it reaches is destroyed: members go in
  // reverse order, and the counters are declared after the journal.
  journal_.reset();
}

void MountedFs::publish_gauges() {
  PageCacheStats ps = pages_->stats();
  c_->writeback_waits = ps.writeback_waits;
  c_->writeback_wait_ns_total = ps.writeback_wait_ns_total;
  c_->writeback_wait_ns_max = ps.writeback_wait_ns_max;
  c_->shadow_copies = ps.shadow_copies;
  c_->pages_under_writeback = ps.writeback_pages;
  c_->dirty_pages = ps.dirty_pages;
  c_->cached_inodes = cached_inodes();
  c_->cached_metadata_blocks = cache_->size();
  c_->metadata_evictions = cache_->evictions();
  JournalStats js = journal_->stats();
  c_->shadow_metadata_copies = js.shadow_copies;
  c_->journal_deltas = js.deltas_logged;
  c_->device_retries = dev_->transient_retries();
  c_->device_read_errors = counted_->read_errors();
  c_->device_write_errors = counted_->write_errors();
  c_->device_flushes = counted_->flushes();
  c_->device_flush_ns_total = counted_->flush_ns();
  c_->journal_commit_ns_total = js.commit_ns_total;
  c_->journal_commit_ns_max = js.commit_ns_max;
  c_->journal_checkpoints = js.checkpoints;
  c_->journal_checkpoint_ns_total = js.checkpoint_ns_total;
  c_->read_only = read_only_ ? 1 : 0;
  c_->heartbeat++;
}

Status MountedFs::mount_failed(int code, std::string reason, std::string* why) {
  if (why)
    *why = std::move(reason);
  else
    SFS_LOG("%s", reason.c_str());
  return err(code);
}

Status MountedFs::read_superblock(std::string* why) {
  AlignedBlock a, b;
  SFS_TRY(dev_->read(kSuperblockA, a.data(), kBlockSize));
  SFS_TRY(dev_->read(kSuperblockB, b.data(), kBlockSize));
  std::string why_a, why_b;
  auto sa = decode_superblock(a.data(), kSuperblockA, dev_->block_count(), &why_a);
  auto sbk = decode_superblock(b.data(), kSuperblockB, dev_->block_count(), &why_b);
  if (sa.ok()) {
    sb_ = *sa;
    if (!sbk.ok()) SFS_LOG("backup superblock is invalid (%s); it will be rewritten", why_b.c_str());
    return Status::Ok();
  }
  if (sbk.ok()) {
    SFS_LOG("primary superblock is invalid (%s); using the backup copy", why_a.c_str());
    sb_ = *sbk;
    return Status::Ok();
  }
  if (why_a.find("bad magic") != std::string::npos && why_b.find("bad magic") != std::string::npos)
    return mount_failed(EUCLEAN, "not a stablefs image (no superblock magic)", why);
  return mount_failed(EUCLEAN, "no valid superblock: primary: " + why_a + "; backup: " + why_b,
                      why);
}

Status MountedFs::write_superblocks() {
  sb_.sequence++;
  AlignedBlock blk;
  // Write, flush, write, flush: a torn write can damage at most one copy.
  for (uint64_t nr : {kSuperblockA, kSuperblockB}) {
    encode_superblock(blk.data(), sb_, nr);
    SFS_TRY(dev_->write(nr, blk.data(), kBlockSize));
    SFS_TRY(dev_->flush());
  }
  return Status::Ok();
}

Status MountedFs::persist_tail(JournalPosition tail) {
  std::lock_guard lk(sb_mu_);
  sb_.journal_tail = tail.pos;
  sb_.journal_tail_txid = tail.txid;
  return write_superblocks();
}

// mount -o discard, on the journal's on_commit: discards what transactions
// <= txid freed. Their frees are durable, so no crash can bring back a tree
// that refers to these blocks; and release_committed has not yet run, so
// nothing can be allocated there, written, or still in flight (the
// allocator's contract) until the discards completed. A failed discard
// loses nothing, the blocks are free either way: logged once, then ignored.
void MountedFs::discard_committed_frees(uint64_t txid) {
  constexpr size_t kBatch = 64;
  std::vector<PhysRange> ranges = alloc_->frees_committed_by(txid);
  for (size_t first = 0; first < ranges.size(); first += kBatch) {
    size_t n = std::min(kBatch, ranges.size() - first);
    std::vector<IoRequest> reqs(n);
    std::vector<IoRequest*> ptrs;
    for (size_t i = 0; i < n; i++) {
      reqs[i].op = IoOp::kDiscard;
      reqs[i].blocknr = ranges[first + i].start;
      reqs[i].discard_blocks = ranges[first + i].count;
      ptrs.push_back(&reqs[i]);
    }
    Status s = dev_->submit_and_wait(ptrs);
    if (!s.ok() && !discard_failure_logged_.exchange(true))
      SFS_LOG("discard of freed blocks failed (%s); freed blocks stay allocated in the backing "
              "store, nothing else is affected",
              std::strerror(s.error()));
  }
}

// FITRIM. The allocator holds back every piece while it is discarded, so
// no block is written while its discard is in flight; a free block holds
// nothing a crash could need (its freeing commit is durable, see
// discard_committed_frees). Blocks count from the start of the device, as
// ext4's do, so the metadata region is in range and simply never free.
Result<uint64_t> MountedFs::trim(uint64_t start, uint64_t len, uint64_t min_len) {
  if (read_only_) return err(EROFS);
  if (!dev_->can_discard()) return err(EOPNOTSUPP);
  const uint64_t total = sb_.total_blocks;
  const uint64_t first = start / kBlockSize;
  const uint64_t min_run = std::max<uint64_t>(1, min_len / kBlockSize);
  if (first >= total || len < kBlockSize || min_run > total) return err(EINVAL);
  const uint64_t end = first + std::min(len / kBlockSize, total - first);
  auto n = alloc_->discard_free(first, end, min_run,
                                [&](PhysRange r) { return dev_->discard(r.start, r.count); });
  if (!n.ok()) return Error{n.error()};
  return *n * kBlockSize;
}

// A read-write mount replays the journal onto the device. A read-only one
// writes nothing to the device, the replay included: the device may be
// read-only (opened O_RDONLY for `ro`, a read-only loop device or NBD
// export), and `ro` promises the image stays as it was. It replays into
// an overlay in memory that the mount then reads through, so it shows the
// filesystem the replay leaves, and the image keeps its journal for the
// next read-write mount or fsck. (ext4 refuses a read-only device that
// needs recovery and replays onto a writable one; both of ours mount.)
Result<ReplayResult> MountedFs::replay_log(JournalGeometry geo) {
  const JournalPosition tail{sb_.journal_tail, sb_.journal_tail_txid};
  if (opts_.norecovery) {
    // Read-only (the option parser sees to it): nothing is appended at the
    // tail, so it can stand for the head.
    SFS_LOG("norecovery: the journal is not replayed; what it holds since the last checkpoint "
            "is not shown");
    return ReplayResult{tail, 0, 0, 0, "norecovery"};
  }
  if (read_only_) dev_ = std::make_unique<OverlayDevice>(std::move(dev_));
  auto replay = replay_journal(*dev_, geo, tail);
  if (replay.ok() && (replay->transactions > 0 || replay->discarded > 0))
    SFS_LOG("replayed %llu journal transactions (%llu blocks)%s; %s",
            (unsigned long long)replay->transactions, (unsigned long long)replay->blocks,
            read_only_ ? " in memory only (read-only mount: the image keeps its journal until a "
                         "read-write mount or fsck.stablefs replays it)"
                       : "",
            replay->stop_reason.c_str());
  return replay;
}

Status MountedFs::raise_marks(uint64_t inode_hwm, uint64_t block_hwm) {
  std::lock_guard lk(sb_mu_);
  Superblock next = sb_;
  next.inode_hwm = std::max(sb_.inode_hwm, inode_hwm);
  next.block_hwm = std::max(sb_.block_hwm, block_hwm);
  SFS_TRY(initialise_above_marks(*dev_, sb_, next));
  sb_.inode_hwm = next.inode_hwm;
  sb_.block_hwm = next.block_hwm;
  SFS_TRY(write_superblocks());
  if (itable_) itable_->set_high_water_mark(sb_.inode_hwm);
  return Status::Ok();
}

Status MountedFs::enable_incompat(uint32_t feature) {
  std::lock_guard lk(sb_mu_);
  if (sb_.incompat & feature) return Status::Ok();
  sb_.incompat |= feature;
  Status s = write_superblocks();
  // Not durable: the caller gives up its change, and the next one tries again.
  if (!s.ok()) sb_.incompat &= ~feature;
  return s;
}

Status MountedFs::start(std::string* why) {
  // A read-write mount appends to the log after its head: it must replay.
  if (opts_.norecovery && !read_only_)
    return mount_failed(EINVAL, "norecovery needs a read-only mount (ro)", why);
  SFS_TRY(read_superblock(why));
  bool unclean = sb_.state == kStateMounted;
  JournalGeometry geo{sb_.journal_start, sb_.journal_blocks};
  auto replay = replay_log(geo);
  if (!replay.ok())
    return mount_failed(replay.error(),
                        std::string("journal replay failed: ") + std::strerror(replay.error()), why);
  // Replay stopped inside a transaction or at one that started at the
  // head: if its commit block is further on, say that it was dropped.
  const bool inside = replay->stop_reason.find("end of log") == std::string::npos;
  if (auto c = find_unreplayed_commit(*dev_, geo, replay->head, inside, true);
      !opts_.norecovery && c.ok() && *c)
    SFS_LOG("journal: transaction %llu has a commit block (block %llu%s) but replay stopped inside "
            "it (%s): its changes are not replayed; run fsck.stablefs",
            (unsigned long long)(*c)->txid, (unsigned long long)(*c)->block,
            (*c)->sealed ? "" : ", itself damaged", replay->stop_reason.c_str());
  {
    std::lock_guard lk(sb_mu_);
    sb_.journal_tail = replay->head.pos;
    sb_.journal_tail_txid = replay->head.txid;
    if (!read_only_) {
      // From here on the log may hold async commits and journaled data,
      // which a binary that does not know them must not replay.
      sb_.incompat |= kIncompatLogFeatures;
      sb_.state = kStateMounted;
      sb_.mount_count++;
      SFS_TRY(write_superblocks());
    }
  }

  cache_ = std::make_unique<BufferCache>(*dev_, std::max<uint64_t>(1, opts_.meta_cache_bytes / kBlockSize));
  auto alloc = Allocator::load(*cache_, sb_, [this](uint64_t inodes, uint64_t blocks) {
    return raise_marks(inodes, blocks);
  });
  if (!alloc.ok())
    return mount_failed(alloc.error(),
                        std::string("cannot load the allocation bitmaps: ") +
                            std::strerror(alloc.error()),
                        why);
  alloc_ = std::move(*alloc);
  itable_ = std::make_unique<InodeTable>(*cache_, sb_);
  csums_ = std::make_unique<ChecksumTable>(*cache_, sb_);
  auto pc = PageCache::create(opts_.cache_bytes);
  if (!pc.ok())
    return mount_failed(pc.error(),
                        "cannot allocate a page cache of " + std::to_string(opts_.cache_bytes) +
                            " bytes: " + std::strerror(pc.error()),
                        why);
  pages_ = std::move(*pc);
  writeback_buffers_ = std::make_unique<WritebackBufferPool>(
      4, opts_.stable_pages == StablePages::kBounce);
  // A writer short of free pages kicks the flusher; it never blocks here.
  pages_->set_pressure_hook([this] { kick_flusher(); });

  JournalOptions jo;
  jo.commit_interval = std::chrono::seconds(opts_.commit_seconds);
  // One flush per commit (journal/FORMAT.md). Replay tells a data block
  // that missed the disk by its checksum, which is sound only when the
  // bytes written are the bytes checksummed: the stable-page guarantee.
  // Under stable_pages=off a race can commit a block that never matched,
  // and replay would discard an fsync'd transaction for it; there the
  // ordered commit keeps the mismatch for the reader to find.
  jo.async_commit = opts_.stable_pages != StablePages::kOff;
  jo.delta_logging = opts_.journal_deltas;
  jo.persist_tail = [this](JournalPosition t) { return persist_tail(t); };
  jo.on_commit = [this](uint64_t txid) {
    if (opts_.discard && dev_->can_discard()) discard_committed_frees(txid);
    alloc_->release_committed(txid);
    c_->journal_commits++;
  };
  // A failed log write or flush aborts the journal: what it committed is
  // safe in the log, nothing more can be. The filesystem turns read-only
  // (writes get EROFS, reads go on); unmount leaves the image marked in
  // use, and the next mount replays the log.
  jo.on_abort = [this](int error) {
    read_only_ = true;
    c_->journal_aborted = uint64_t(error);
    if (shut_down_) return;  // shutdown() said why
    SFS_LOG("journal aborted (%s): the filesystem is read-only from now on; unmount and mount "
            "again to replay the journal",
            std::strerror(error));
  };
  journal_ = std::make_unique<Journal>(*dev_, *cache_, geo, replay->head, std::move(jo));

  auto root = get_inode(kRootIno);
  if (!root.ok() || !(*root)->is_dir())
    return mount_failed(EUCLEAN, "the root directory is missing or corrupt (run fsck.stablefs)",
                        why);
  if (unclean && !read_only_) SFS_TRY(cleanup_orphans());
  if (!opts_.counters_mountpoint.empty()) {
    std::string note;
    auto seg = CountersSegment::create(opts_.counters_mountpoint, opts_.source, &note);
    if (!note.empty()) SFS_LOG("%s", note.c_str());
    if (!seg.ok()) return mount_failed(seg.error(), note, why);
    segment_ = std::move(*seg);
    c_ = &segment_->counters();
  }
  c_->replayed_transactions = replay->transactions;
  c_->read_only = read_only_ ? 1 : 0;
  mounted_ = true;
  flusher_ = std::thread([this] { flusher_main(); });
  stats_thread_ = std::thread([this] {
    std::unique_lock lk(flusher_mu_);
    while (!flusher_stop_) {
      lk.unlock();
      publish_gauges();
      lk.lock();
      stop_cv_.wait_for(lk, std::chrono::milliseconds(50), [&] { return flusher_stop_; });
    }
  });
  return Status::Ok();
}

// After a crash, inodes that were unlinked while still open are left with
// a link count of 0; nothing refers to them any more, so free them now.
Status MountedFs::cleanup_orphans() {
  uint64_t freed = 0;
  // Only the initialised part of the table can hold an inode in use.
  for (uint64_t blk = 0; blk < initialised_spans(sb_).inode_table.count; blk++) {
    auto buf = cache_->read(sb_.inode_table_start + blk, kMagicInodeTable);
    if (!buf.ok()) return Error{buf.error()};
    for (uint32_t slot = 0; slot < kInodesPerBlock; slot++) {
      uint64_t ino = blk * kInodesPerBlock + slot + 1;
      DiskInode d = decode_inode((*buf)->payload() + slot * kInodeSize);
      if (d.mode == 0 || d.nlink != 0 || ino == kRootIno) continue;
      auto n = get_inode(ino);
      if (!n.ok()) return Error{n.error()};
      SFS_TRY(evict_inode(*n));
      freed++;
    }
  }
  if (freed) SFS_LOG("freed %llu orphaned inodes", (unsigned long long)freed);
  return Status::Ok();
}

void MountedFs::flusher_main() {
  using std::chrono::milliseconds;
  const uint32_t delay = opts_.writeback_delay_ms;
  // Write-behind (delay 0) is kicked by write() and sleeps otherwise (a
  // kick is never lost: see kick_flusher); the flusher still wakes once a
  // second to trim the inode cache and to retry a failed writeback.
  const milliseconds nap = delay ? milliseconds(delay) : milliseconds(1000);
  std::unique_lock lk(flusher_mu_);
  bool idle = false;  // the last pass wrote nothing: don't spin on it
  auto last_trim = std::chrono::steady_clock::now();
  while (!flusher_stop_) {
    flusher_cv_.wait_for(lk, nap, [&] {
      if (flusher_stop_) return true;
      // Wake early when the cache fills with dirty pages.
      if (pages_->dirty_count() * 2 > pages_->capacity_pages()) return true;
      if (delay != 0 || pages_->dirty_count() == 0) return false;
      return !idle || flusher_kicked_;
    });
    if (flusher_stop_) break;
    flusher_kicked_ = false;
    lk.unlock();
    uint64_t before = c_->blocks_written.load(std::memory_order_relaxed);
    Status s = writeback_all();
    if (!s.ok()) SFS_LOG("background writeback failed: %s", std::strerror(s.error()));
    idle = !s.ok() || c_->blocks_written.load(std::memory_order_relaxed) == before;
    if (auto now = std::chrono::steady_clock::now(); now - last_trim >= std::chrono::seconds(1)) {
      trim_inode_cache();
      last_trim = now;
    }
    lk.lock();
  }
}

Status MountedFs::shutdown() {
  if (shut_down_.exchange(true)) return Status::Ok();
  // As godown's default, FS_GOING_DOWN_FULLSYNC (the kernel cannot pass
  // the ioctl's flags to a FUSE daemon, so pick the one that loses nothing
  // accepted): dirty data is written back and everything committed; from
  // here on every request is refused. Writing back first also keeps a size
  // that an earlier store recorded from pointing at blocks never written.
  Status s;
  if (!read_only_) {
    Status w = write_back_everything();
    s = journal_->commit();
    if (s.ok()) s = w;
  }
  read_only_ = true;
  journal_->abort(ESHUTDOWN);
  SFS_LOG("shut down (FS_IOC_SHUTDOWN)%s: every request fails with EIO until the filesystem is "
          "mounted again, which replays the journal",
          s.ok() ? " after writing back and committing" : ", the last writeback or commit failed");
  return s;
}

void MountedFs::metadata_corruption_found() {
  c_->metadata_errors++;
  if (corruption_seen_.exchange(true)) return;  // acted on and logged once
  if (opts_.errors == ErrorsBehavior::kContinue) {
    SFS_LOG("metadata corruption found (errors=continue): the requests that meet it fail with "
            "EIO, everything else goes on; unmount and run fsck.stablefs");
    return;
  }
  // As the journal abort does, but the journal goes on: what was accepted
  // before is still written back and committed.
  read_only_ = true;
  c_->read_only = 1;
  SFS_LOG("metadata corruption found (errors=remount-ro): the filesystem is read-only from now "
          "on; unmount and run fsck.stablefs");
}

Status MountedFs::unmount() {
  if (!mounted_) return Status::Ok();
  {
    std::lock_guard lk(flusher_mu_);
    flusher_stop_ = true;
  }
  flusher_cv_.notify_all();
  stop_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  if (stats_thread_.joinable()) stats_thread_.join();
  mounted_ = false;
  // The segment lives exactly as long as the mount: readers must not see
  // counters of a mount that is gone.
  if (segment_) {
    heap_counters_ = std::make_unique<LiveCounters>();
    c_ = heap_counters_.get();
    segment_.reset();
  }
  // Read-only since the mount, or the journal aborted: nothing to write.
  // Read-only because of corruption: what was accepted before still goes.
  const bool corrupt = corruption_seen_.load();
  if (read_only_ && !(corrupt && opts_.errors == ErrorsBehavior::kRemountRo && !journal_->error()))
    return Status::Ok();

  Status first;
  auto keep = [&](Status s) {
    if (first.ok() && !s.ok()) first = s;
  };
  keep(writeback_all());
  // Inodes still referenced only by the kernel: the kernel is going away.
  std::vector<InodeRef> all;
  {
    std::lock_guard lk(icache_mu_);
    for (auto& [ino, n] : icache_) all.push_back(n);
  }
  for (auto& n : all) {
    bool orphan;
    {
      std::lock_guard lk(n->mu);
      orphan = !n->freed && n->disk.nlink == 0 && n->disk.mode != 0;
      n->lookups = 0;
    }
    if (orphan) keep(evict_inode(n));
  }
  keep(journal_->shutdown());
  if (first.ok() && corrupt) {
    SFS_LOG("unmount: metadata corruption was found while mounted; the image stays marked in use "
            "(not cleanly unmounted): run fsck.stablefs");
    return Status::Ok();
  }
  if (!first.ok()) {
    SFS_LOG("unmount: %s; the image stays marked in use and the journal will be replayed",
            std::strerror(first.error()));
    return first;
  }
  std::lock_guard lk(sb_mu_);
  sb_.state = kStateClean;
  sb_.incompat &= ~kIncompatLogFeatures;  // the log is empty
  return write_superblocks();
}

Timespec MountedFs::now() const {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return Timespec{ts.tv_sec, uint32_t(ts.tv_nsec)};
}

}  // namespace stablefs
