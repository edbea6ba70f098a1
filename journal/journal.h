// A JBD2-style physical journal for metadata blocks.
//
// Vocabulary (as in fs/jbd2): a *handle* is one atomic filesystem operation;
// handles join the *running transaction*; a transaction is *committed* to
// the log (descriptor blocks, copies of the metadata blocks, a commit block
// with an XXH3 over the whole transaction) and later *checkpointed*: written
// to its home locations, after which the log tail moves past it.
//
// Protocol for a metadata change:
//   Handle h = journal.start();
//   h.get_write_access(buf);   // before touching buf's bytes
//   ... modify buf ...
//   h.dirty_metadata(buf);     // after the bytes are complete
//   h.stop();                  // or let the destructor do it
// A transaction starts committing only after every handle on it has
// stopped, so no half-built update ever reaches the log (seed 001).
//
// Lock order: callers may hold filesystem-level locks (inode, directory)
// when calling start(); a thread that holds a handle must never wait for a
// lock whose holder may be blocked in start(). Inside the journal:
//   filesystem locks -> Journal::Impl::mu -> (nothing: BufferCache::mu_,
//   MetaBuffer::mu_ and the device's locks are never taken while Impl::mu
//   is held); MetaBuffer::mu_ is a leaf taken without Impl::mu.
// Impl::mu is never held across I/O or across a user callback
// (persist_tail, on_commit, on_locked). A thread holding a handle must not
// call commit()/wait_for_commit()/shutdown(): the commit waits for that
// handle to stop, as in JBD2.
//
// Threads: one commit thread per journal does all log I/O, every
// checkpoint and the commit_interval timer, so the log head/tail and the
// checkpoint list have a single writer. The running transaction accepts new
// handles while the previous one's log I/O is in flight (one committing +
// one running transaction at a time).
//
// Frozen versions and shadow copies (JBD2's b_frozen_data / shadow
// buffers; MetaBuffer, MetaBlock and FrozenBlock are in buffer.h):
//  1. Commit of T, with every handle on T stopped and start() blocked:
//     freeze() takes a FrozenBlock reference to the live version of each
//     dirty buffer (a refcount, no copy). Only now is a journal reference
//     ever added, and no handle is open, so no writer is inside any buffer.
//  2. T+1 opens at once. Its writers call get_write_access(buf): if the
//     live version is referenced by the journal (T committing, or an older
//     transaction awaiting checkpoint), it is cloned into a new live
//     version under the buffer's mutex; the clone is published only when
//     complete. The writer modifies the clone; the frozen version is never
//     written again by anyone but step 3. Count: JournalStats::shadow_copies.
//     A version no longer referenced (checkpointed, or superseded in the
//     checkpoint list by a newer commit) is modified in place: no copy.
//  3. The commit thread seals each frozen version (txid + checksum in its
//     header) under that buffer's mutex, then writes it to the log. The
//     mutex orders the seal against a clone of the same version in step 2:
//     the clone sees the header wholly sealed or wholly unsealed, and is
//     resealed when it is itself committed. If no writer came, the frozen
//     version is still the live one and is sealed in place; if one did, it
//     is the journal's alone. Either way the checksum covers exactly the
//     bytes written.
//  4. Once durable, the versions move to the checkpoint list, replacing
//     older versions of the same blocks (which are released). Checkpoint
//     writes these committed versions home, never live bytes, then drops
//     them: the next writer of each buffer then works in place again.
// So memory costs one extra block only for a buffer modified again while
// the journal still needs its older bytes, and the running transaction
// never waits for journal I/O. Lock-free readers (MetaBuffer::data())
// always get a valid, at most one change stale, version: a replaced version
// is retired, and freed only once no reader's hazard slot names it
// (journal/retired_versions.h). The txid/checksum header fields of a live
// version change at step 3, so readers rely on magic/blocknr/owner only.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/base/result.h"
#include "core/io/block_device.h"
#include "journal/buffer.h"

namespace stablefs {

class Journal;

struct JournalGeometry {
  uint64_t start = 0;   // first block of the log region
  uint64_t blocks = 0;  // log length in blocks
};

struct JournalPosition {
  uint64_t pos = 0;   // offset inside the log region
  uint64_t txid = 1;  // txid of the transaction that starts there
};

struct JournalOptions {
  std::chrono::milliseconds commit_interval{5000};
  // One flush per commit (journal/FORMAT.md, "Async commit"): the log
  // blocks, the data tags and the commit block are written together and
  // flushed once; replay verifies the tagged data blocks of the newest
  // transaction. Off: flush before and after the commit block.
  bool async_commit = false;
  // Log a metadata block that the log already holds a version of (since
  // the last checkpoint) as the bytes that changed (journal/FORMAT.md,
  // "Deltas"). The first version after a checkpoint always goes whole, so
  // a checkpoint torn at home is repaired by replay as before.
  bool delta_logging = false;
  // Persists the log tail (both superblocks). Called after a checkpoint has
  // made every transaction before `tail` durable at its home location.
  std::function<Status(JournalPosition tail)> persist_tail;
  // Called (outside journal locks) once transaction txid is durable.
  std::function<void(uint64_t txid)> on_commit;
  // Called once, on the commit thread and outside journal locks, when a
  // log or checkpoint write or flush failed and the journal aborted: from
  // then on every start() gets an inactive handle and commits fail. What
  // was committed before stays replayable.
  std::function<void(int error)> on_abort;
  // Test hook, called on the commit thread (outside journal locks) right
  // after transaction txid is locked for commit and before the commit waits
  // for its handles: lets a test open that window deterministically.
  std::function<void(uint64_t txid)> on_locked;
  // Test hook, called on the commit thread (outside journal locks) once
  // transaction txid's versions are frozen and the next transaction is
  // open, before they are sealed: lets a test make a shadow copy of a
  // version that is not yet sealed.
  std::function<void(uint64_t txid)> on_frozen;
};

struct JournalStats {
  uint64_t commits = 0;
  uint64_t async_commits = 0;  // of `commits`, those written with one flush
  uint64_t blocks_logged = 0;
  uint64_t checkpoints = 0;
  uint64_t shadow_copies = 0;  // versions cloned by get_write_access()
  uint64_t data_blocks_logged = 0;  // journaled data blocks committed
  uint64_t deltas_logged = 0;       // metadata blocks logged as deltas
  uint64_t handles = 0;
  // Time from a commit's start (its handles drained) until its commit
  // block is durable, summed and the longest; and the time checkpoints
  // took (home writes, flush, tail), summed. Steady clock.
  uint64_t commit_ns_total = 0;
  uint64_t commit_ns_max = 0;
  uint64_t checkpoint_ns_total = 0;
};

class Handle {
 public:
  Handle() = default;
  Handle(Handle&& o) noexcept;
  Handle& operator=(Handle&& o) noexcept;
  ~Handle() { stop(); }

  bool active() const { return journal_ != nullptr; }
  uint64_t txid() const { return txid_; }
  // buf must be owned by a std::shared_ptr (BufferCache hands them out so).
  // EINVAL otherwise, EIO on an inactive handle. Makes a shadow copy when
  // the journal still needs buf's current bytes (see above): take
  // data()/payload() pointers only after this call. Never waits for I/O.
  Status get_write_access(MetaBuffer& buf);
  // Adds buf to the transaction (once). Cancels a revoke of the same block
  // in this transaction: the block was freed and reused as metadata.
  void dirty_metadata(MetaBuffer& buf);
  // The metadata block was freed in this transaction: drop it from the
  // journal's pending writes and write a revoke record, so neither a
  // checkpoint nor a replay can later write stale metadata over whatever
  // the block is reused for.
  void revoke(uint64_t blocknr);
  // A data block whose write has completed is referenced by this
  // transaction with `checksum` (the checksum table records it in the same
  // handle). An async commit lists it so replay can tell whether the block
  // reached the disk with the commit.
  void add_data_tag(uint64_t blocknr, uint64_t checksum);
  // Blocks freed in this transaction: they may be reused once it is
  // durable, so they must not be tagged (a tag would then fail at replay).
  void drop_data_tags(uint64_t blocknr, uint64_t count);
  // Journaled data (journal/FORMAT.md, "Journaled data"): `image` becomes
  // the contents of data block `home` when this transaction commits, and
  // stays there (replay or checkpoint puts it home; until the checkpoint
  // did, Journal::data_image() serves it to readers). `checksum` is
  // block_checksum(home, image), which the caller records in the checksum
  // table in the same handle; it replaces a data tag of home. The image
  // must never change again: the journal keeps a reference.
  void log_data_block(uint64_t home, std::shared_ptr<MetaBlock> image, uint64_t checksum);
  // Data blocks [blocknr, blocknr + count) are freed in this transaction:
  // their logged images must never reach home again (revoked, as JBD2 does
  // for freed metadata). Allocator::free_blocks calls it.
  void forget_data_blocks(uint64_t blocknr, uint64_t count);
  // Undoes forget_data_blocks() for a block this handle freed and takes
  // back (Allocator::unfree_blocks): its newest image counts again.
  void keep_data_block(uint64_t blocknr);
  void stop();

 private:
  friend class Journal;
  Handle(Journal* j, uint64_t txid, uint64_t credits)
      : journal_(j), txid_(txid), credits_(credits) {}
  Journal* journal_ = nullptr;
  uint64_t txid_ = 0;
  uint64_t credits_ = 0;  // reserved in the transaction until stop()
};

class Journal {
 public:
  // `head` is where the next transaction goes and its txid (from replay).
  Journal(BlockDevice& dev, BufferCache& cache, JournalGeometry geo, JournalPosition head,
          JournalOptions opts);
  ~Journal();  // stops the commit thread; call shutdown() first to persist
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Joins the running transaction. Blocks while that transaction is locked
  // for commit or is too large to grow. Once the journal has failed
  // (error() != 0) returns an inactive handle, whose get_write_access()
  // fails with EIO.
  // `credits` (JBD2's nblocks) is the most log blocks the handle may add,
  // for the few handles that dirty many blocks (an xattr set of 64
  // members). Such a handle starts only while the transaction's blocks,
  // the credits of its other open handles and its own stay under the hard
  // limit, so they cannot together outgrow the log however many request
  // threads start one at once (capped at half the hard limit). A handle
  // without credits waits only at the hard limit, as before.
  Handle start(uint64_t credits = 0);

  // Commits the running transaction (if it has anything) and waits until
  // it is durable. Concurrent callers share one commit (group commit).
  Status commit();
  // Waits until transaction txid is durable, committing it if needed.
  Status wait_for_commit(uint64_t txid);
  // Final commit and a full checkpoint; tail == head afterwards.
  Status shutdown();

  uint64_t running_txid() const;
  uint64_t committed_txid() const;
  JournalStats stats() const;
  // The newest logged image of data block `home` that is not yet known to
  // be at home (see Handle::log_data_block), or null. A reader that finds
  // none may read the block from the device: an image is dropped only
  // after its checkpoint write completed, or once the block is freed.
  std::shared_ptr<const MetaBlock> data_image(uint64_t home) const;
  // Sticky: once a commit fails the journal refuses new work (EIO).
  int error() const;
  // Makes the journal fail as a failed commit does: the running
  // transaction is never committed, later handles are inactive, and
  // on_abort runs. For a caller that cannot take back a change it made in
  // a handle (its data write failed and undoing the mapping failed too).
  void abort(int code);

  // Writes every committed block home, flushes, persists the tail and frees
  // the log (what shutdown() does after its final commit). Uncommitted
  // changes never reach home locations.
  Status checkpoint();
  // Where the next transaction will be written, and the oldest live one.
  // Equal when the log holds nothing that still needs replaying.
  JournalPosition log_head() const;
  JournalPosition log_tail() const;

 private:
  friend class Handle;
  // ... implementation details in journal.cc ...
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct ReplayResult {
  JournalPosition head;           // where the next transaction goes
  uint64_t transactions = 0;      // transactions replayed
  uint64_t blocks = 0;            // metadata blocks written home
  uint64_t discarded = 0;         // newest async commit whose data was not on disk (0 or 1)
  std::string stop_reason;        // why the scan stopped (for the log)
};

// Replays every complete, checksum-valid transaction from `tail` onwards to
// the home locations, flushes, and returns the new head. Stops cleanly at
// the first torn or invalid transaction; never applies a partial one.
Result<ReplayResult> replay_journal(BlockDevice& dev, JournalGeometry geo, JournalPosition tail);

// One block to write: shared by commit, checkpoint and replay.
struct BlockWrite {
  uint64_t blocknr = 0;
  const uint8_t* data = nullptr;  // kBlockSize bytes, kBlockSize-aligned
};
// Writes the blocks in the given order as few multi-segment requests as
// possible (a request is one run of consecutive block numbers, at most
// IoRequest::kMaxSegments segments). No flush; with `fua` every request is
// a FUA write, durable when this returns ok.
Status write_block_runs(BlockDevice& dev, const std::vector<BlockWrite>& writes,
                        bool fua = false);

}  // namespace stablefs
