// Handles, the running transaction, and the commit thread: commit (with
// group commit and overlap of the next transaction), checkpoint and the
// commit_interval timer. The log layout is in journal/format.h and
// journal/FORMAT.md.
#include "journal/journal.h"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cstring>
#include <deque>
#include <set>
#include <unordered_map>

#include "journal/delta.h"
#include "journal/format.h"
#include "journal/retired_versions.h"

namespace stablefs {

using Clock = std::chrono::steady_clock;

namespace {
uint64_t elapsed_ns(Clock::time_point since) {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - since).count());
}
}  // namespace

// A journaled data block's image and the checksum it was logged with.
struct DataImage {
  std::shared_ptr<MetaBlock> image;
  uint64_t checksum = 0;
  uint64_t txid = 0;  // the transaction that logged it
};

// The running transaction (declared in buffer.h). Guarded by Impl::mu.
class Transaction {
 public:
  enum class State { kRunning, kLocked };

  Transaction(uint64_t id, Clock::time_point exp) : txid(id), expires(exp) {}

  bool empty() const { return metadata.empty() && revokes.empty() && data_blocks.empty(); }
  uint64_t log_blocks() const {
    return txn_log_blocks(metadata.size(), revokes.size()) + data_tag_blocks(data_tags.size()) +
           journaled_data_blocks(data_blocks.size());
  }

  const uint64_t txid;
  State state = State::kRunning;
  int handles = 0;
  uint64_t reserved = 0;  // credits of the open handles (Journal::start)
  // Dirty buffers by home block number: what the commit freezes and logs.
  std::map<uint64_t, std::shared_ptr<MetaBuffer>> metadata;
  std::set<uint64_t> revokes;
  // Data blocks referenced with their checksums (the newest wins), for an
  // async commit. Beyond kMaxDataTags the transaction is committed the
  // ordered way (flush before the commit block) and keeps no tags: replay
  // never has to read more than that many data blocks.
  std::map<uint64_t, uint64_t> data_tags;
  bool too_many_data_tags = false;
  // Journaled data blocks by home (the newest image wins).
  std::map<uint64_t, DataImage> data_blocks;
  Clock::time_point expires;  // the commit_interval timer
};

namespace {

// A transaction frozen for commit, owned by the commit thread: references
// to the exact versions it writes (no copies).
struct FrozenTransaction {
  uint64_t txid = 0;
  std::vector<uint64_t> homes;  // home block of blocks[i]
  std::vector<FrozenBlock> blocks;
  // The buffers blocks[i] came from, kept only until sealed (seal() takes
  // the buffer's mutex).
  std::vector<std::shared_ptr<MetaBuffer>> bufs;
  std::vector<uint64_t> revokes;
  std::vector<DataTag> data_tags;
  bool async = false;  // one flush, data tags listed
  // Journaled data: (home, checksum) and the image, logged raw.
  std::vector<DataTag> data_homes;
  std::vector<FrozenBlock> data_blocks;
};

// A transaction with more data blocks than this is committed with a flush
// before its commit block (a streaming write, where one more flush costs
// nothing next to the data); 2048 tags are 9 log blocks and 8 MiB to
// verify at replay.
constexpr size_t kMaxDataTags = 2048;

// The newest committed version of a block, waiting to be written home.
struct CheckpointCopy {
  FrozenBlock block;
  uint64_t txid = 0;
  bool metadata = true;  // false: a journaled data block (raw bytes)
};

}  // namespace

struct Journal::Impl {
  Impl(BlockDevice& d, BufferCache& c, JournalGeometry g, JournalPosition h, JournalOptions o)
      : dev(d), cache(c), geo(g), opts(std::move(o)), head(h), tail(h) {
    committed_txid = h.txid - 1;
    running = std::make_unique<Transaction>(h.txid, Clock::now() + opts.commit_interval);
  }

  // Log sizes: the running transaction asks for a commit at soft_limit log
  // blocks, and start() blocks at hard_limit until a commit makes room.
  uint64_t soft_limit() const { return std::max<uint64_t>(geo.blocks / 8, 1); }
  uint64_t hard_limit() const { return std::max<uint64_t>(geo.blocks / 4, 2); }
  uint64_t log_used() const { return (head.pos + geo.blocks - tail.pos) % geo.blocks; }
  // One block stays unused so that head == tail always means "empty".
  uint64_t log_free() const { return geo.blocks - 1 - log_used(); }

  bool nothing_to_commit(const Transaction& t) const {
    return t.empty() && t.handles == 0 && t.state == Transaction::State::kRunning;
  }
  void request_commit(uint64_t txid) {
    if (commit_request < txid) commit_request = txid;
    commit_cv.notify_all();
  }
  void fail(int code) {  // mu held
    if (error == 0) error = code;
    start_cv.notify_all();
    done_cv.notify_all();
  }

  void dirty_metadata(uint64_t txid, MetaBuffer& buf);
  void revoke(uint64_t txid, uint64_t blocknr);
  void add_data_tag(uint64_t txid, uint64_t blocknr, uint64_t checksum);
  void drop_data_tags(uint64_t txid, uint64_t blocknr, uint64_t count);
  void log_data_block(uint64_t txid, uint64_t home, std::shared_ptr<MetaBlock> image,
                      uint64_t checksum);
  void forget_data_blocks(uint64_t txid, uint64_t blocknr, uint64_t count);
  void keep_data_block(uint64_t txid, uint64_t blocknr);
  void commit_thread();
  void checkpoint_as_committer(std::unique_lock<std::mutex>& lk, bool requested);
  bool commit_wanted(Clock::time_point now) const;
  void commit_running(std::unique_lock<std::mutex>& lk);
  FrozenTransaction freeze(uint64_t txid, std::map<uint64_t, std::shared_ptr<MetaBuffer>>&& metadata,
                           std::set<uint64_t>&& revokes, bool async,
                           const std::map<uint64_t, uint64_t>& data_tags,
                           const std::map<uint64_t, DataImage>& data_blocks);
  void seal(FrozenTransaction& ft);
  void plan_deltas(const FrozenTransaction& ft, std::vector<size_t>* whole, DeltaWriter* deltas) const;
  Status write_transaction(const FrozenTransaction& ft, uint64_t* deltas_logged);
  void file_for_checkpoint(FrozenTransaction&& ft);
  Status checkpoint_now();

  BlockDevice& dev;
  BufferCache& cache;
  const JournalGeometry geo;
  const JournalOptions opts;

  // Protects every field below up to `thread`, plus MetaBuffer::dirty_txid_.
  // First journal lock in the lock order; never held across I/O or a
  // callback.
  mutable std::mutex mu;
  std::condition_variable start_cv;   // start(): running unlocked / has room
  std::condition_variable commit_cv;  // commit thread: requests, handle drain
  std::condition_variable done_cv;    // waiters: commit/checkpoint done, error
  std::unique_ptr<Transaction> running;
  uint64_t committing_txid = 0;  // 0 = no commit I/O in flight
  // A thread is in commit_running or checkpoint_now: the commit thread, or
  // a commit() caller that found it idle and committed itself. Those two
  // own the log head, the checkpoint list and the committing transaction,
  // so one thread at a time.
  bool committer_busy = false;
  // The log is over half full after a commit a commit() caller made: the
  // commit thread checkpoints before anyone commits again, as the commit
  // thread does right after its own commits.
  bool checkpoint_due = false;
  uint64_t committed_txid = 0;
  uint64_t commit_request = 0;   // commit every txid up to this one
  bool checkpoint_request = false;
  uint64_t checkpoint_rounds = 0;  // bumped when a requested checkpoint ends
  bool stopping = false;
  int error = 0;
  JournalStats stats;
  // Written only by the commit thread (under mu, so getters may read them).
  JournalPosition head;  // next transaction goes here, with head.txid
  JournalPosition tail;  // oldest transaction not yet checkpointed

  // Counted outside mu: get_write_access() clones without the journal lock.
  std::atomic<uint64_t> shadow_copies{0};

  // Every journaled data block whose newest image may not be at home yet:
  // logged by the running or committing transaction, or committed and
  // waiting for its checkpoint. Readers get the image from here. An entry
  // leaves when a checkpoint has written that very image home, or when a
  // durable revoke says the block was freed.
  std::unordered_map<uint64_t, DataImage> data_images;
  std::atomic<size_t> data_image_count{0};  // data_images.size(), for readers' fast path

  // Owned by the commit thread: no lock.
  std::map<uint64_t, CheckpointCopy> checkpoint_list;  // home blocknr -> copy
  std::thread thread;
};

// ---------------------------------------------------------------- Handle

Handle::Handle(Handle&& o) noexcept : journal_(o.journal_), txid_(o.txid_), credits_(o.credits_) {
  o.journal_ = nullptr;
}

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    stop();
    journal_ = o.journal_;
    txid_ = o.txid_;
    credits_ = o.credits_;
    o.journal_ = nullptr;
  }
  return *this;
}

// Without Impl::mu for the copy itself: this handle keeps its transaction
// running, so no commit can freeze the buffer meanwhile (the freeze happens
// only while no handle is open), and a journal reference dropped
// concurrently at most costs one unneeded copy.
Status Handle::get_write_access(MetaBuffer& buf) {
  if (!journal_) return err(EIO);
  if (buf.weak_from_this().expired()) return err(EINVAL);
  auto& j = *journal_->impl_;
  {
    std::lock_guard lk(j.mu);
    if (j.error) return err(EIO);
    assert(j.running->txid == txid_);
  }
  if (buf.prepare_write()) j.shadow_copies.fetch_add(1, std::memory_order_relaxed);
  return Status::Ok();
}

void Handle::dirty_metadata(MetaBuffer& buf) {
  if (journal_) journal_->impl_->dirty_metadata(txid_, buf);
}

void Handle::revoke(uint64_t blocknr) {
  if (journal_) journal_->impl_->revoke(txid_, blocknr);
}

void Handle::add_data_tag(uint64_t blocknr, uint64_t checksum) {
  if (journal_) journal_->impl_->add_data_tag(txid_, blocknr, checksum);
}

void Handle::drop_data_tags(uint64_t blocknr, uint64_t count) {
  if (journal_) journal_->impl_->drop_data_tags(txid_, blocknr, count);
}

void Handle::log_data_block(uint64_t home, std::shared_ptr<MetaBlock> image, uint64_t checksum) {
  if (journal_) journal_->impl_->log_data_block(txid_, home, std::move(image), checksum);
}

void Handle::forget_data_blocks(uint64_t blocknr, uint64_t count) {
  if (journal_) journal_->impl_->forget_data_blocks(txid_, blocknr, count);
}

void Handle::keep_data_block(uint64_t blocknr) {
  if (journal_) journal_->impl_->keep_data_block(txid_, blocknr);
}

void Journal::Impl::log_data_block(uint64_t txid, uint64_t home, std::shared_ptr<MetaBlock> image,
                                   uint64_t checksum) {
  std::lock_guard lk(mu);
  Transaction& t = *running;
  assert(t.txid == txid);
  DataImage d{std::move(image), checksum, txid};
  data_images[home] = d;
  data_image_count.store(data_images.size());
  t.data_blocks[home] = std::move(d);
  // The image is the block's new contents, in the log itself: nothing is
  // left to verify at home for this transaction.
  t.data_tags.erase(home);
  if (t.log_blocks() >= soft_limit()) request_commit(t.txid);
}

void Journal::Impl::forget_data_blocks(uint64_t txid, uint64_t blocknr, uint64_t count) {
  std::lock_guard lk(mu);
  Transaction& t = *running;
  assert(t.txid == txid);
  t.data_blocks.erase(t.data_blocks.lower_bound(blocknr), t.data_blocks.lower_bound(blocknr + count));
  if (data_images.empty()) return;
  auto revoke_if_logged = [&](uint64_t nr) {
    if (data_images.count(nr)) t.revokes.insert(nr);
  };
  if (count <= data_images.size()) {
    for (uint64_t nr = blocknr; nr < blocknr + count; nr++) revoke_if_logged(nr);
  } else {
    for (const auto& [nr, d] : data_images)
      if (nr >= blocknr && nr < blocknr + count) t.revokes.insert(nr);
  }
}

void Journal::Impl::keep_data_block(uint64_t txid, uint64_t blocknr) {
  std::lock_guard lk(mu);
  Transaction& t = *running;
  assert(t.txid == txid);
  auto it = data_images.find(blocknr);
  if (it == data_images.end()) return;
  t.revokes.erase(blocknr);
  // Logged again: if the newest image was this transaction's, forget
  // removed it; if it is older, relogging is harmless (same bytes).
  it->second.txid = txid;
  t.data_blocks[blocknr] = it->second;
}

void Journal::Impl::add_data_tag(uint64_t txid, uint64_t blocknr, uint64_t checksum) {
  std::lock_guard lk(mu);
  Transaction& t = *running;
  assert(t.txid == txid);
  if (!opts.async_commit || t.too_many_data_tags) return;
  t.data_tags[blocknr] = checksum;
  if (t.data_tags.size() > kMaxDataTags) {
    t.too_many_data_tags = true;
    t.data_tags.clear();
  }
}

void Journal::Impl::drop_data_tags(uint64_t txid, uint64_t blocknr, uint64_t count) {
  std::lock_guard lk(mu);
  Transaction& t = *running;
  assert(t.txid == txid);
  t.data_tags.erase(t.data_tags.lower_bound(blocknr), t.data_tags.lower_bound(blocknr + count));
}

void Journal::Impl::dirty_metadata(uint64_t txid, MetaBuffer& buf) {
  std::shared_ptr<MetaBuffer> sp = buf.weak_from_this().lock();
  std::lock_guard lk(mu);
  Transaction& t = *running;
  assert(t.txid == txid);
  if (!sp) {
    // A buffer nobody owns cannot be kept until commit; losing the change
    // silently would be worse than stopping the journal.
    assert(!"MetaBuffer not owned by a shared_ptr");
    fail(EIO);
    return;
  }
  if (buf.dirty_txid_ == t.txid) return;
  auto& slot = t.metadata[buf.blocknr()];
  // A freed and re-created block: the old buffer object leaves the list.
  if (slot) slot->dirty_txid_ = 0;
  slot = std::move(sp);
  buf.dirty_txid_ = t.txid;
  // JBD2's cancel_revoke: the block was freed earlier in this transaction
  // and is metadata again, so this copy must replay.
  t.revokes.erase(buf.blocknr());
  if (t.log_blocks() >= soft_limit()) request_commit(t.txid);
}

void Journal::Impl::revoke(uint64_t txid, uint64_t blocknr) {
  std::lock_guard lk(mu);
  Transaction& t = *running;
  assert(t.txid == txid);
  if (auto it = t.metadata.find(blocknr); it != t.metadata.end()) {
    it->second->dirty_txid_ = 0;
    t.metadata.erase(it);
  }
  // Older committed copies leave the checkpoint list only when this revoke
  // is durable (file_for_checkpoint): until then a crash must still find
  // the block's committed contents at home or in the log.
  t.revokes.insert(blocknr);
  if (t.log_blocks() >= soft_limit()) request_commit(t.txid);
}

void Handle::stop() {
  if (!journal_) return;
  auto& j = *journal_->impl_;
  {
    std::lock_guard lk(j.mu);
    assert(j.running->txid == txid_ && j.running->handles > 0);
    // Only a commit waiting for the handles to drain needs to hear of it;
    // waking the idle commit thread after every handle would cost a
    // context switch per metadata operation.
    if (--j.running->handles == 0 && j.running->state == Transaction::State::kLocked)
      j.commit_cv.notify_all();
    if (credits_) {
      j.running->reserved -= credits_;
      j.start_cv.notify_all();  // a handle with credits may wait for them
    }
  }
  journal_ = nullptr;
}

// ---------------------------------------------------------------- Journal

std::shared_ptr<const MetaBlock> Journal::data_image(uint64_t home) const {
  const Impl& j = *impl_;
  if (j.data_image_count.load() == 0) return nullptr;
  std::lock_guard lk(j.mu);
  auto it = j.data_images.find(home);
  return it == j.data_images.end() ? nullptr : it->second.image;
}

Journal::Journal(BlockDevice& dev, BufferCache& cache, JournalGeometry geo, JournalPosition head,
                 JournalOptions opts)
    : impl_(std::make_unique<Impl>(dev, cache, geo, head, std::move(opts))) {
  if (geo.blocks < 2 || head.pos >= geo.blocks) impl_->error = EINVAL;
  impl_->thread = std::thread([this] { impl_->commit_thread(); });
}

Journal::~Journal() {
  {
    std::lock_guard lk(impl_->mu);
    impl_->stopping = true;
    impl_->commit_cv.notify_all();
  }
  impl_->thread.join();
}

Handle Journal::start(uint64_t credits) {
  Impl& j = *impl_;
  const uint64_t hard = j.hard_limit();
  credits = std::min(credits, hard / 2);
  std::unique_lock lk(j.mu);
  for (;;) {
    if (j.error) return Handle();
    Transaction& t = *j.running;
    if (t.state == Transaction::State::kRunning) {
      const bool room = credits == 0 ? t.log_blocks() < hard
                                     : t.log_blocks() + t.reserved + credits < hard;
      if (room) break;
      // Only a commit makes room for the blocks already logged; open
      // handles' credits come back when they stop.
      if (t.log_blocks() + credits >= hard) j.request_commit(t.txid);
    }
    j.start_cv.wait(lk);
  }
  j.running->handles++;
  j.running->reserved += credits;
  j.stats.handles++;
  return Handle(this, j.running->txid, credits);
}

Status Journal::commit() {
  uint64_t txid;
  {
    std::lock_guard lk(impl_->mu);
    txid = impl_->running->txid;
  }
  return wait_for_commit(txid);
}

Status Journal::wait_for_commit(uint64_t txid) {
  Impl& j = *impl_;
  std::unique_lock lk(j.mu);
  for (;;) {
    if (j.error) return err(EIO);
    if (j.committed_txid >= txid) return Status::Ok();
    Transaction& t = *j.running;
    if (txid > t.txid) return err(EINVAL);
    if (txid == t.txid) {
      // Everything done in t is already in the log or on its way: nothing
      // to write, just wait for the commit in flight (if any).
      if (j.nothing_to_commit(t)) {
        if (j.committed_txid + 1 >= txid) return Status::Ok();
      } else if (!j.committer_busy && !j.checkpoint_due &&
                 t.state == Transaction::State::kRunning) {
        // Nobody is committing: do it here rather than wake the commit
        // thread and sleep until it wakes us (two context switches per
        // fsync, and on a busy machine two trips through the run queue).
        // Fsyncs that arrive meanwhile wait and share the next commit, as
        // they would with the commit thread.
        j.committer_busy = true;
        j.commit_running(lk);
        j.committer_busy = false;
        j.commit_cv.notify_all();  // the commit thread may have work (or must see an error)
        continue;
      } else {
        j.request_commit(txid);
      }
    }
    j.done_cv.wait(lk);
  }
}

Status Journal::checkpoint() {
  Impl& j = *impl_;
  std::unique_lock lk(j.mu);
  if (j.error) return err(EIO);
  uint64_t round = j.checkpoint_rounds;
  j.checkpoint_request = true;
  j.commit_cv.notify_all();
  j.done_cv.wait(lk, [&] { return j.error || j.checkpoint_rounds > round; });
  return j.error ? Status(err(EIO)) : Status::Ok();
}

Status Journal::shutdown() {
  SFS_TRY(commit());
  return checkpoint();
}

uint64_t Journal::running_txid() const {
  std::lock_guard lk(impl_->mu);
  return impl_->running->txid;
}

uint64_t Journal::committed_txid() const {
  std::lock_guard lk(impl_->mu);
  return impl_->committed_txid;
}

JournalStats Journal::stats() const {
  std::lock_guard lk(impl_->mu);
  JournalStats st = impl_->stats;
  st.shadow_copies = impl_->shadow_copies.load(std::memory_order_relaxed);
  return st;
}

void Journal::abort(int code) {
  std::lock_guard lk(impl_->mu);
  impl_->fail(code);
  impl_->commit_cv.notify_all();
}

int Journal::error() const {
  std::lock_guard lk(impl_->mu);
  return impl_->error;
}

JournalPosition Journal::log_head() const {
  std::lock_guard lk(impl_->mu);
  return impl_->head;
}

JournalPosition Journal::log_tail() const {
  std::lock_guard lk(impl_->mu);
  return impl_->tail;
}

// ---------------------------------------------------------------- commit thread

bool Journal::Impl::commit_wanted(Clock::time_point now) const {
  const Transaction& t = *running;
  if (t.state != Transaction::State::kRunning) return false;
  if (commit_request >= t.txid) return true;
  if (t.empty()) return false;
  return t.log_blocks() >= soft_limit() || now >= t.expires;
}

// A checkpoint on the commit thread, holding the committer role; wakes
// everyone waiting for a commit or checkpoint to end (a checkpoint()
// caller, when `requested`, once its round is counted). mu held.
void Journal::Impl::checkpoint_as_committer(std::unique_lock<std::mutex>& lk, bool requested) {
  committer_busy = true;
  lk.unlock();
  Status s = checkpoint_now();
  lk.lock();
  committer_busy = false;
  if (!s.ok()) fail(EIO);
  if (requested) checkpoint_rounds++;
  done_cv.notify_all();
}

void Journal::Impl::commit_thread() {
  std::unique_lock lk(mu);
  while (!stopping && !error) {
    if (committer_busy) {  // a commit() caller commits: it notifies when done
      commit_cv.wait(lk);
      continue;
    }
    if (checkpoint_due) {
      checkpoint_due = false;
      checkpoint_as_committer(lk, /*requested=*/false);
      continue;
    }
    Clock::time_point now = Clock::now();
    if (commit_wanted(now)) {
      committer_busy = true;
      commit_running(lk);
      committer_busy = false;
      continue;
    }
    if (checkpoint_request) {
      checkpoint_request = false;
      checkpoint_as_committer(lk, /*requested=*/true);
      continue;
    }
    if (now >= running->expires) running->expires = now + opts.commit_interval;
    // A copy: a commit() caller may commit meanwhile and free `running`,
    // and wait_until reads its deadline again after every wakeup.
    const Clock::time_point deadline = running->expires;
    commit_cv.wait_until(lk, deadline);
  }
  // The journal aborted: nothing more can be committed. Tell the owner
  // (outside the lock) so it can stop accepting changes.
  if (error && !stopping && opts.on_abort) {
    int code = error;
    lk.unlock();
    opts.on_abort(code);
  }
}

// Commits the running transaction: lock it, wait for its handles, take
// references to the live versions of its buffers, open the next running
// transaction, then seal and do the log I/O while that one fills. Called
// and returns with mu held.
void Journal::Impl::commit_running(std::unique_lock<std::mutex>& lk) {
  Transaction& t = *running;
  const uint64_t txid = t.txid;
  t.state = Transaction::State::kLocked;
  if (opts.on_locked) {
    lk.unlock();
    opts.on_locked(txid);
    lk.lock();
  }
  commit_cv.wait(lk, [&] { return t.handles == 0 || stopping; });
  // The destructor abandons the commit (a crash); an abort() while the
  // handles drained means the transaction must never reach the log.
  if (stopping || error) return;
  const Clock::time_point started = Clock::now();

  if (t.empty()) {
    // Handles came and went without changing anything: no txid is used,
    // the transaction simply keeps running.
    t.state = Transaction::State::kRunning;
    if (commit_request >= txid) commit_request = txid - 1;
    t.expires = Clock::now() + opts.commit_interval;
    start_cv.notify_all();
    done_cv.notify_all();
    return;
  }
  if (t.log_blocks() > geo.blocks - 1) {
    // It can never fit; failing loudly beats waiting forever.
    fail(EIO);
    return;
  }

  // No handle is open and start() waits while t is locked, so nobody can
  // write these buffers until the next transaction opens below; from then
  // on a writer's get_write_access() finds the versions frozen and clones.
  std::map<uint64_t, std::shared_ptr<MetaBuffer>> metadata = std::move(t.metadata);
  std::set<uint64_t> revokes = std::move(t.revokes);
  std::map<uint64_t, uint64_t> data_tags = std::move(t.data_tags);
  std::map<uint64_t, DataImage> data_blocks = std::move(t.data_blocks);
  const bool async = opts.async_commit && !t.too_many_data_tags;
  for (auto& [nr, buf] : metadata) buf->dirty_txid_ = 0;
  lk.unlock();
  FrozenTransaction ft =
      freeze(txid, std::move(metadata), std::move(revokes), async, data_tags, data_blocks);
  lk.lock();
  running = std::make_unique<Transaction>(txid + 1, Clock::now() + opts.commit_interval);
  committing_txid = txid;
  start_cv.notify_all();
  lk.unlock();

  if (opts.on_frozen) opts.on_frozen(txid);
  seal(ft);
  uint64_t deltas = 0;
  Status s = write_transaction(ft, &deltas);
  const uint64_t took = elapsed_ns(started);
  uint64_t logged = ft.blocks.size() + ft.data_blocks.size();
  uint64_t data_logged = ft.data_blocks.size();
  if (s.ok()) file_for_checkpoint(std::move(ft));
  reclaim_retired_versions();

  lk.lock();
  committing_txid = 0;
  if (!s.ok()) {
    fail(EIO);
    return;
  }
  // on_commit runs before waiters learn the transaction is durable: a
  // commit() caller (an ENOSPC retry, say) relies on its effects, such as
  // freed blocks becoming allocatable.
  lk.unlock();
  if (opts.on_commit) opts.on_commit(txid);
  lk.lock();
  committed_txid = txid;
  stats.commits++;
  if (async) stats.async_commits++;
  stats.blocks_logged += logged;
  stats.data_blocks_logged += data_logged;
  stats.deltas_logged += deltas;
  stats.commit_ns_total += took;
  stats.commit_ns_max = std::max(stats.commit_ns_max, took);
  done_cv.notify_all();
  if (log_used() <= geo.blocks / 2) return;
  if (std::this_thread::get_id() != thread.get_id()) {
    // A commit() caller committed: its fsync is done; the commit thread
    // checkpoints (the caller notifies it).
    checkpoint_due = true;
    return;
  }
  lk.unlock();
  s = checkpoint_now();
  lk.lock();
  if (!s.ok()) fail(EIO);
}

// Takes a reference to each buffer's live version: O(1) per buffer, no
// copy. Runs while the transaction is locked with no handle open.
FrozenTransaction Journal::Impl::freeze(uint64_t txid,
                                        std::map<uint64_t, std::shared_ptr<MetaBuffer>>&& metadata,
                                        std::set<uint64_t>&& revokes, bool async,
                                        const std::map<uint64_t, uint64_t>& data_tags,
                                        const std::map<uint64_t, DataImage>& data_blocks) {
  FrozenTransaction ft;
  ft.txid = txid;
  ft.homes.reserve(metadata.size());
  ft.blocks.reserve(metadata.size());
  ft.bufs.reserve(metadata.size());
  for (auto& [nr, buf] : metadata) {
    ft.homes.push_back(nr);
    ft.blocks.push_back(buf->freeze());
    ft.bufs.push_back(std::move(buf));
  }
  ft.revokes.assign(revokes.begin(), revokes.end());
  ft.async = async;
  if (async) {
    ft.data_tags.reserve(data_tags.size());
    for (auto [nr, csum] : data_tags) ft.data_tags.push_back({nr, csum});
  }
  ft.data_homes.reserve(data_blocks.size());
  ft.data_blocks.reserve(data_blocks.size());
  for (const auto& [nr, d] : data_blocks) {
    ft.data_homes.push_back({nr, d.checksum});
    ft.data_blocks.emplace_back(d.image);
  }
  return ft;
}

// Seals every frozen version with txid (JBD2's t_frozen trigger): the
// checksum covers exactly the bytes written to the log and later home,
// which no writer can change any more. Runs after the next transaction has
// opened, so its writers never wait for this.
void Journal::Impl::seal(FrozenTransaction& ft) {
  for (size_t i = 0; i < ft.bufs.size(); i++) ft.bufs[i]->seal(ft.blocks[i], ft.txid);
  ft.bufs.clear();
}

// Which frozen blocks can go to the log as deltas: those whose previous
// version the checkpoint list holds, so it is in the log since the tail
// (every checkpoint empties the list and moves the tail to the head) and
// replay finds it there to apply the delta to. A block revoked since then
// has left the list, so a reused block is logged whole again.
void Journal::Impl::plan_deltas(const FrozenTransaction& ft, std::vector<size_t>* whole,
                                DeltaWriter* deltas) const {
  for (size_t i = 0; i < ft.blocks.size(); i++) {
    if (opts.delta_logging) {
      auto it = checkpoint_list.find(ft.homes[i]);
      if (it != checkpoint_list.end() && it->second.metadata &&
          it->second.block.data() != ft.blocks[i].data() &&
          deltas->add(ft.homes[i], it->second.block.data(), ft.blocks[i].data()))
        continue;
    }
    whole->push_back(i);
  }
}

// Ordered commit: writes descriptors + copies + revoke blocks, flushes,
// writes the commit block, flushes. The first flush also orders the data
// blocks the transaction refers to: their writes completed before they
// were recorded.
//
// Async commit: writes all of that, the data tags and the commit block in
// one batch, then flushes once. Nothing orders the commit block after the
// rest on a device with a volatile cache, so replay checks both halves:
// the commit's hash covers every log block (a missing one fails it), and
// the data tags of the newest transaction are read back and verified (a
// data block that did not reach the disk discards the transaction, which
// no fsync had yet promised: fsync returns after the flush). Older
// transactions need no such check: each commit starts after the previous
// one's flush (or FUA writes) returned.
//
// On a device with native FUA (an NBD server that advertises it) each form
// saves its last round trip, and stays safe on a volatile write cache:
// - ordered: the commit block is a FUA write instead of a write and a
//   flush. The flush before it already made everything else durable, and a
//   FUA reply means the commit block is too; the trailing flush made
//   nothing else durable that anyone waits for (the next commit flushes
//   before its own commit block).
// - async with no data tags (only metadata and journaled data, all of it
//   in this batch): every log write, commit block included, is a FUA write,
//   and there is no flush. The commit is durable once every write of the
//   batch replied; a power cut before that keeps any subset of them, which
//   the transaction hash rejects exactly as it rejects a subset kept by a
//   cache that was never flushed. A transaction with data tags keeps its
//   flush: its data blocks were written earlier, without FUA, and only a
//   flush covers them.
Status Journal::Impl::write_transaction(const FrozenTransaction& ft, uint64_t* deltas_logged) {
  std::vector<size_t> whole;
  DeltaWriter deltas;
  plan_deltas(ft, &whole, &deltas);
  auto log_blocks = [&] {
    return txn_log_blocks(whole.size(), ft.revokes.size()) + deltas.blocks().size() +
           data_tag_blocks(ft.data_tags.size()) + journaled_data_blocks(ft.data_blocks.size());
  };
  uint64_t need = log_blocks();
  if (need > log_free()) {
    // The checkpoint empties the list: every block goes whole after it.
    SFS_TRY(checkpoint_now());
    whole.clear();
    deltas = DeltaWriter();
    plan_deltas(ft, &whole, &deltas);
    need = log_blocks();
  }
  if (need > geo.blocks - 1) return err(EIO);
  assert(need <= log_free());
  *deltas_logged = deltas.entries();

  const uint64_t start = head.pos;
  uint64_t off = 0;
  auto abs_block = [&](uint64_t i) { return geo.start + (start + i) % geo.blocks; };
  std::deque<AlignedBlock> records;  // descriptors and revoke blocks; stable addresses
  std::vector<BlockWrite> writes;
  writes.reserve(need);

  std::vector<uint64_t> homes;
  for (size_t first = 0; first < whole.size(); first += kJournalListCapacity) {
    uint32_t n = uint32_t(std::min<size_t>(kJournalListCapacity, whole.size() - first));
    homes.clear();
    for (uint32_t i = 0; i < n; i++) homes.push_back(ft.homes[whole[first + i]]);
    AlignedBlock& d = records.emplace_back();
    encode_journal_list(d.data(), kMagicJournalDescriptor, abs_block(off), ft.txid, homes.data(), n);
    writes.push_back({abs_block(off++), d.data()});
    for (uint32_t i = 0; i < n; i++)
      writes.push_back({abs_block(off++), ft.blocks[whole[first + i]].data()});
  }
  for (AlignedBlock& d : deltas.blocks()) {
    seal_meta_block(d.data(), abs_block(off), ft.txid);
    writes.push_back({abs_block(off++), d.data()});
  }
  for (size_t first = 0; first < ft.revokes.size(); first += kJournalListCapacity) {
    uint32_t n = uint32_t(std::min<size_t>(kJournalListCapacity, ft.revokes.size() - first));
    AlignedBlock& r = records.emplace_back();
    encode_journal_list(r.data(), kMagicJournalRevoke, abs_block(off), ft.txid,
                        &ft.revokes[first], n);
    writes.push_back({abs_block(off++), r.data()});
  }
  for (size_t first = 0; first < ft.data_tags.size(); first += kDataTagCapacity) {
    uint32_t n = uint32_t(std::min<size_t>(kDataTagCapacity, ft.data_tags.size() - first));
    AlignedBlock& r = records.emplace_back();
    encode_data_tags(r.data(), abs_block(off), ft.txid, &ft.data_tags[first], n);
    writes.push_back({abs_block(off++), r.data()});
  }
  for (size_t first = 0; first < ft.data_homes.size(); first += kDataTagCapacity) {
    uint32_t n = uint32_t(std::min<size_t>(kDataTagCapacity, ft.data_homes.size() - first));
    AlignedBlock& r = records.emplace_back();
    encode_data_tags(r.data(), abs_block(off), ft.txid, &ft.data_homes[first], n,
                     kMagicJournalDataBlocks);
    writes.push_back({abs_block(off++), r.data()});
    for (uint32_t i = 0; i < n; i++)
      writes.push_back({abs_block(off++), ft.data_blocks[first + i].data()});
  }

  CommitRecord c;
  c.txid = ft.txid;
  c.flags = ft.async ? kCommitAsync : 0;
  c.log_blocks = writes.size();
  c.txn_hash = txn_hash_init(ft.txid);
  for (const BlockWrite& w : writes) c.txn_hash = txn_hash_step(c.txn_hash, w.data);
  AlignedBlock commit_block;
  encode_commit_block(commit_block.data(), abs_block(off), c);
  assert(off + 1 == need);

  const bool fua = dev.has_native_fua();
  if (ft.async) {
    writes.push_back({abs_block(off), commit_block.data()});
    const bool self_contained = fua && ft.data_tags.empty();
    SFS_TRY(write_block_runs(dev, writes, self_contained));
    if (!self_contained) SFS_TRY(dev.flush());
  } else {
    SFS_TRY(write_block_runs(dev, writes));
    SFS_TRY(dev.flush());
    SFS_TRY(write_block_runs(dev, {{abs_block(off), commit_block.data()}}, fua));
    if (!fua) SFS_TRY(dev.flush());
  }

  std::lock_guard lk(mu);
  head = JournalPosition{(start + need) % geo.blocks, ft.txid + 1};
  return Status::Ok();
}

// A durable transaction's versions become the newest committed contents
// of their blocks (releasing older ones, which a later writer then need not
// copy); its revokes drop older versions of freed blocks, which must never
// be written home over whatever the block is reused for.
void Journal::Impl::file_for_checkpoint(FrozenTransaction&& ft) {
  for (uint64_t nr : ft.revokes) checkpoint_list.erase(nr);
  for (size_t i = 0; i < ft.blocks.size(); i++) {
    CheckpointCopy& cp = checkpoint_list[ft.homes[i]];
    cp.block = std::move(ft.blocks[i]);
    cp.txid = ft.txid;
    cp.metadata = true;
  }
  for (size_t i = 0; i < ft.data_blocks.size(); i++) {
    CheckpointCopy& cp = checkpoint_list[ft.data_homes[i].blocknr];
    cp.block = std::move(ft.data_blocks[i]);
    cp.txid = ft.txid;
    cp.metadata = false;
  }
  // A freed data block's images are dead once its revoke is durable (the
  // block becomes reusable only after this commit).
  if (!ft.revokes.empty()) {
    std::lock_guard lk(mu);
    for (uint64_t nr : ft.revokes) {
      auto it = data_images.find(nr);
      if (it != data_images.end() && it->second.txid <= ft.txid) data_images.erase(it);
    }
    data_image_count.store(data_images.size());
  }
}

// Writes every committed version home, flushes, then persists the new
// tail: only after that may the log space be reused. Releasing the
// versions lets the next writer of each buffer modify it in place. Commit
// thread only.
Status Journal::Impl::checkpoint_now() {
  const Clock::time_point started = Clock::now();
  std::vector<BlockWrite> writes;
  writes.reserve(checkpoint_list.size());
  for (const auto& [nr, cp] : checkpoint_list) writes.push_back({nr, cp.block.data()});
  if (!writes.empty()) {
    SFS_TRY(write_block_runs(dev, writes));
    SFS_TRY(dev.flush());
  }
  JournalPosition new_tail;
  {
    std::lock_guard lk(mu);
    new_tail = head;
  }
  if (opts.persist_tail) SFS_TRY(opts.persist_tail(new_tail));
  {
    // Images now at home are no longer needed by readers; a newer image
    // of the same block (logged since) stays.
    std::lock_guard lk(mu);
    if (!data_images.empty()) {
      for (const auto& [nr, cp] : checkpoint_list) {
        auto it = data_images.find(nr);
        if (it != data_images.end() && it->second.image->bytes.data() == cp.block.data())
          data_images.erase(it);
      }
      data_image_count.store(data_images.size());
    }
  }
  checkpoint_list.clear();
  reclaim_retired_versions();
  std::lock_guard lk(mu);
  tail = new_tail;
  stats.checkpoints++;
  stats.checkpoint_ns_total += elapsed_ns(started);
  return Status::Ok();
}

}  // namespace stablefs
