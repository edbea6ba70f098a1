// Journal replay, in two passes as in JBD2:
//   1. scan: from the tail, verify whole transactions (every block's header
//      checksum, the commit's txid, count and whole-transaction hash) and
//      collect their copies and revokes, stopping at the first bad one;
//   2. replay: write home the newest copy of every block that no later (or
//      same) valid transaction revoked, then flush.
// Nothing from the disk is trusted: counts are bounded by the block and by
// the log, and the scan covers the log at most once.
#include <algorithm>
#include <cstring>
#include <map>
#include <unordered_map>

#include "core/base/checksum.h"
#include "journal/delta.h"
#include "journal/format.h"
#include "journal/journal.h"

namespace stablefs {

Status write_block_runs(BlockDevice& dev, const std::vector<BlockWrite>& writes, bool fua) {
  // Bounded batches keep the request array small however many blocks, and
  // large enough that a checkpoint's scattered home writes keep the device
  // busy (the device keeps up to a ring's depth in flight).
  constexpr size_t kBatch = 512;
  std::vector<IoRequest> reqs;
  reqs.reserve(std::min(kBatch, writes.size()));
  auto submit = [&]() -> Status {
    std::vector<IoRequest*> ptrs;
    for (IoRequest& r : reqs) ptrs.push_back(&r);
    Status s = ptrs.empty() ? Status::Ok() : dev.submit_and_wait(ptrs);
    reqs.clear();
    return s;
  };
  for (size_t i = 0; i < writes.size(); i++) {
    const BlockWrite& w = writes[i];
    bool extends = !reqs.empty() && reqs.back().iov_count < IoRequest::kMaxSegments &&
                   reqs.back().blocknr + uint64_t(reqs.back().iov_count) == w.blocknr;
    if (!extends) {
      if (reqs.size() == kBatch) SFS_TRY(submit());
      IoRequest& r = reqs.emplace_back();
      r.op = IoOp::kWrite;
      r.blocknr = w.blocknr;
      r.fua = fua;
    }
    reqs.back().add(const_cast<uint8_t*>(w.data), kBlockSize);
  }
  return submit();
}

namespace {

// Sequential reads of the log through a window of up to 64 blocks, so the
// scan costs one request per 64 blocks rather than one per block.
class LogReader {
 public:
  LogReader(BlockDevice& dev, JournalGeometry geo) : dev_(dev), geo_(geo), window_(kWindow) {}

  // The block at log offset off (< geo.blocks).
  Result<const uint8_t*> block(uint64_t off) {
    if (off < first_ || off >= first_ + count_) {
      IoRequest r;
      r.op = IoOp::kRead;
      r.blocknr = geo_.start + off;
      count_ = std::min<uint64_t>(kWindow, geo_.blocks - off);  // never across the wrap
      for (uint64_t i = 0; i < count_; i++) r.add(window_[i].data(), kBlockSize);
      IoRequest* p = &r;
      first_ = off;
      if (!dev_.submit_and_wait({&p, 1}).ok()) {
        count_ = 0;
        return err(EIO);
      }
    }
    return static_cast<const uint8_t*>(window_[off - first_].data());
  }

 private:
  static constexpr uint64_t kWindow = IoRequest::kMaxSegments;
  BlockDevice& dev_;
  JournalGeometry geo_;
  std::vector<AlignedBlock> window_;
  uint64_t first_ = 0;
  uint64_t count_ = 0;
};

// A block image in the log: a metadata copy (verified by its own header)
// or a journaled data block (verified by the checksum its record names).
struct LoggedCopy {
  uint64_t home = 0;
  uint64_t off = 0;  // log offset
  bool data = false;
  uint64_t checksum = 0;  // data only
};

struct ScannedTransaction {
  uint64_t txid = 0;
  std::vector<LoggedCopy> copies;
  std::vector<DeltaEntry> deltas;
  std::vector<uint64_t> revokes;
  std::vector<DataTag> data_tags;
  bool async = false;   // committed with one flush: data tags to verify
  uint64_t length = 0;  // log blocks, commit included
};

class Scanner {
 public:
  Scanner(BlockDevice& dev, JournalGeometry geo) : dev_(dev), geo_(geo), log_(dev, geo) {}

  // Verifies the transaction txid at log offset start, which may use at
  // most budget blocks. ok(true): valid, *t filled in. ok(false): not a
  // complete valid transaction, *why says which block and why.
  Result<bool> scan(uint64_t start, uint64_t txid, uint64_t budget, ScannedTransaction* t,
                    std::string* why) {
    t->txid = txid;
    uint64_t n = 0;  // blocks walked so far
    uint64_t hash = txn_hash_init(txid);
    std::vector<uint64_t> list;
    auto where = [&](const std::string& what) {
      uint64_t off = (start + n) % geo_.blocks;
      *why = "txid " + std::to_string(txid) + " at log offset " + std::to_string(off) +
             " (block " + std::to_string(geo_.start + off) + "): " + what;
      return false;
    };
    // Reads and header-verifies the block n of the transaction; a copy
    // verifies against its home block, journal records against their own.
    auto next = [&](uint64_t blocknr_or_0, const uint8_t** out) -> Result<bool> {
      if (n >= budget) return where("transaction runs past the end of the live log");
      uint64_t off = (start + n) % geo_.blocks;
      auto b = log_.block(off);
      if (!b.ok()) return Error{b.error()};
      uint64_t expect = blocknr_or_0 ? blocknr_or_0 : geo_.start + off;
      std::string v;
      if (!verify_meta_block(*b, expect, 0, &v).ok())
        return where((n == 0 ? "end of log: " : "") + v);
      uint64_t got = decode_meta_header(*b).txid;
      if (got != txid)
        return where((n == 0 ? "end of log: " : "") + std::string("stale block from txid ") +
                     std::to_string(got));
      *out = *b;
      return true;
    };

    for (;;) {
      const uint8_t* b = nullptr;
      auto r = next(0, &b);
      if (!r.ok() || !*r) return r;
      uint32_t magic = decode_meta_header(b).magic;
      if (magic == kMagicJournalDescriptor || magic == kMagicJournalRevoke) {
        std::string v;
        if (!decode_journal_list(b, &list, &v)) return where(v);
        for (uint64_t home : list) {
          if (!home_ok(home)) return where("bad home block " + std::to_string(home));
        }
        hash = txn_hash_step(hash, b);
        n++;
        if (magic == kMagicJournalRevoke) {
          t->revokes.insert(t->revokes.end(), list.begin(), list.end());
          continue;
        }
        for (uint64_t home : list) {
          const uint8_t* copy = nullptr;
          r = next(home, &copy);
          if (!r.ok() || !*r) return r;
          t->copies.push_back({home, (start + n) % geo_.blocks, false, 0});
          hash = txn_hash_step(hash, copy);
          n++;
        }
      } else if (magic == kMagicJournalDataBlocks) {
        std::string v;
        std::vector<DataTag> blocks;
        if (!decode_data_tags(b, &blocks, &v)) return where(v);
        for (const DataTag& d : blocks)
          if (!home_ok(d.blocknr)) return where("bad data block home " + std::to_string(d.blocknr));
        hash = txn_hash_step(hash, b);
        n++;
        for (const DataTag& d : blocks) {
          // Raw file bytes: the checksum the record names identifies them
          // (a stale block from an earlier lap of the log does not match).
          if (n >= budget) return where("transaction runs past the end of the live log");
          uint64_t off = (start + n) % geo_.blocks;
          auto raw = log_.block(off);
          if (!raw.ok()) return Error{raw.error()};
          if (block_checksum(d.blocknr, *raw, kBlockSize) != d.checksum)
            return where("data block for " + std::to_string(d.blocknr) + " does not match its checksum");
          t->copies.push_back({d.blocknr, off, true, d.checksum});
          hash = txn_hash_step(hash, *raw);
          n++;
        }
      } else if (magic == kMagicJournalDelta) {
        std::string v;
        size_t before = t->deltas.size();
        if (!decode_delta_block(b, &t->deltas, &v)) return where(v);
        for (size_t i = before; i < t->deltas.size(); i++) {
          if (!home_ok(t->deltas[i].home))
            return where("bad delta home block " + std::to_string(t->deltas[i].home));
          t->deltas[i].txid = txid;
        }
        hash = txn_hash_step(hash, b);
        n++;
      } else if (magic == kMagicJournalDataTags) {
        std::string v;
        size_t before = t->data_tags.size();
        if (!decode_data_tags(b, &t->data_tags, &v)) return where(v);
        for (size_t i = before; i < t->data_tags.size(); i++)
          if (!home_ok(t->data_tags[i].blocknr))
            return where("bad data tag block " + std::to_string(t->data_tags[i].blocknr));
        hash = txn_hash_step(hash, b);
        n++;
      } else if (magic == kMagicJournalCommit) {
        CommitRecord c = decode_commit_block(b);
        if (n == 0) return where("commit block without contents");
        if (c.txid != txid) return where("commit names txid " + std::to_string(c.txid));
        if (c.log_blocks != n)
          return where("commit count " + std::to_string(c.log_blocks) + " but " +
                       std::to_string(n) + " blocks precede it");
        if (c.txn_hash != hash) return where("commit checksum mismatch");
        if (c.flags & ~kCommitAsync) return where("unknown commit flags");
        if (!(c.flags & kCommitAsync) && !t->data_tags.empty())
          return where("data tags in an ordered commit");
        t->async = c.flags & kCommitAsync;
        t->length = n + 1;
        return true;
      } else {
        return where("unexpected block magic " + std::to_string(magic));
      }
    }
  }

 private:
  bool home_ok(uint64_t home) const {
    bool in_log = home >= geo_.start && home - geo_.start < geo_.blocks;
    return home < dev_.block_count() && !in_log;
  }

  BlockDevice& dev_;
  JournalGeometry geo_;
  LogReader log_;
};

// An async commit reached the disk without a flush between its data and
// its commit block: true when every data block it tags holds the bytes of
// the recorded checksum. *why names the first that does not.
Result<bool> data_reached_disk(BlockDevice& dev, const ScannedTransaction& t, std::string* why) {
  AlignedBlock buf;
  for (const DataTag& tag : t.data_tags) {
    Status s = dev.read(tag.blocknr, buf.data(), kBlockSize);
    if (!s.ok()) return Error{s.error()};
    if (block_checksum(tag.blocknr, buf.data(), kBlockSize) != tag.checksum) {
      *why = "txid " + std::to_string(t.txid) + ": data block " + std::to_string(tag.blocknr) +
             " did not reach the disk with its async commit; transaction discarded";
      return false;
    }
  }
  return true;
}

// The newest whole copy of a block in the log, and the deltas logged after
// it, oldest first.
struct ChosenCopy {
  LoggedCopy copy;
  std::vector<const DeltaEntry*> deltas;
};

// Reads the chosen copies from the log (re-verifying them), applies their
// deltas, and writes them home, in batches.
Status write_home(BlockDevice& dev, JournalGeometry geo,
                  const std::map<uint64_t, ChosenCopy>& copies) {
  constexpr size_t kBatch = IoRequest::kMaxSegments;
  std::vector<AlignedBlock> bufs(kBatch);
  auto it = copies.begin();
  while (it != copies.end()) {
    std::vector<IoRequest> reads;
    std::vector<BlockWrite> writes;
    std::vector<const ChosenCopy*> kinds;
    reads.reserve(kBatch);
    for (size_t i = 0; i < kBatch && it != copies.end(); i++, ++it) {
      IoRequest& r = reads.emplace_back();
      r.op = IoOp::kRead;
      r.blocknr = geo.start + it->second.copy.off;
      r.add(bufs[i].data(), kBlockSize);
      writes.push_back({it->first, bufs[i].data()});
      kinds.push_back(&it->second);
    }
    std::vector<IoRequest*> ptrs;
    for (IoRequest& r : reads) ptrs.push_back(&r);
    SFS_TRY(dev.submit_and_wait(ptrs));
    // The scan verified these; a block that changed since is a device fault.
    for (size_t i = 0; i < writes.size(); i++) {
      const BlockWrite& w = writes[i];
      const LoggedCopy& c = kinds[i]->copy;
      bool good = c.data ? block_checksum(w.blocknr, w.data, kBlockSize) == c.checksum
                         : verify_meta_block(w.data, w.blocknr, 0).ok();
      if (!good) return err(EIO);
      // Each delta must rebuild exactly the version its transaction sealed
      // (the scan checked the records, not what they apply to), and the
      // result must still be metadata: a delta may carry header bytes, and
      // one that rebuilds its version faithfully can still leave a header
      // no reader accepts. Nothing of this batch is written then.
      for (const DeltaEntry* d : kinds[i]->deltas)
        if (!apply_delta(const_cast<uint8_t*>(w.data), *d)) return err(EUCLEAN);
      if (!kinds[i]->deltas.empty() && !verify_meta_block(w.data, w.blocknr, 0).ok())
        return err(EUCLEAN);
    }
    SFS_TRY(write_block_runs(dev, writes));
  }
  return Status::Ok();
}

}  // namespace

Result<ReplayResult> replay_journal(BlockDevice& dev, JournalGeometry geo, JournalPosition tail) {
  if (geo.blocks < 2 || geo.start > dev.block_count() ||
      geo.blocks > dev.block_count() - geo.start || tail.pos >= geo.blocks)
    return err(EUCLEAN);

  // Pass 1: scan and verify.
  Scanner scanner(dev, geo);
  std::vector<ScannedTransaction> txns;
  std::unordered_map<uint64_t, uint64_t> revoked;  // home -> newest revoking txid
  ReplayResult res;
  res.head = tail;
  uint64_t scanned = 0;
  for (;;) {
    ScannedTransaction t;
    std::string why;
    // The live log is at most geo.blocks - 1 blocks: never read the tail's
    // transaction a second time.
    uint64_t budget = geo.blocks - 1 - scanned;
    auto ok = scanner.scan(res.head.pos, res.head.txid, budget, &t, &why);
    if (!ok.ok()) return Error{ok.error()};
    if (!*ok) {
      res.stop_reason = why;
      break;
    }
    scanned += t.length;
    res.head = JournalPosition{(res.head.pos + t.length) % geo.blocks, t.txid + 1};
    txns.push_back(std::move(t));
  }
  // Only the newest transaction can have been cut off between its data
  // and its commit block (see Journal::Impl::write_transaction).
  if (!txns.empty() && txns.back().async) {
    std::string why;
    auto whole = data_reached_disk(dev, txns.back(), &why);
    if (!whole.ok()) return Error{whole.error()};
    if (!*whole) {
      const ScannedTransaction& t = txns.back();
      // Its space is reused, but never its txid: a stale block of it can
      // then never pass for part of the next transaction.
      res.head = JournalPosition{(res.head.pos + geo.blocks - t.length) % geo.blocks, t.txid + 1};
      res.stop_reason = why;
      res.discarded = 1;
      txns.pop_back();
    }
  }
  for (const ScannedTransaction& t : txns)
    for (uint64_t nr : t.revokes) {
      uint64_t& r = revoked[nr];
      r = std::max(r, t.txid);
    }

  // Pass 2: the newest surviving copy of each block, with the deltas
  // logged after it, goes home.
  std::map<uint64_t, ChosenCopy> chosen;  // by home
  auto live = [&](uint64_t home, uint64_t txid) {
    auto r = revoked.find(home);
    return r == revoked.end() || r->second < txid;
  };
  for (const ScannedTransaction& t : txns) {
    for (const LoggedCopy& c : t.copies)
      if (live(c.home, t.txid)) chosen[c.home] = ChosenCopy{c, {}};
    for (const DeltaEntry& d : t.deltas) {
      if (!live(d.home, t.txid)) continue;
      // The commit logs a delta only against a metadata version it logged
      // since the tail and that no later revoke killed.
      auto it = chosen.find(d.home);
      if (it == chosen.end() || it->second.copy.data) return err(EUCLEAN);
      it->second.deltas.push_back(&d);
    }
  }
  if (!chosen.empty()) {
    SFS_TRY(write_home(dev, geo, chosen));
    SFS_TRY(dev.flush());
  }
  res.transactions = txns.size();
  res.blocks = chosen.size();
  return res;
}

}  // namespace stablefs
