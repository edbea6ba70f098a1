// The corruption sweep (issue 11): for every kind of block in a populated
// image (both superblocks, each metadata type, data blocks, the blocks of
// a journal transaction still to replay), flip a byte at several offsets,
// then run fsck -n and fsck -y, mount, and read everything back. Each run
// must hold:
//  - no crash and no hang: fsck and the daemon are children with
//    deadlines, and the walk of the mount has a watchdog that aborts the
//    connection (then the test fails);
//  - fsck -n writes nothing, and reports the flip (exit 4) for every kind
//    of block but the journal's (see below);
//  - no short read and no wrong byte: every read of a file is either its
//    full, correct bytes or an error, the size never changes, a symlink
//    reads back its whole target or fails, an xattr its value or fails, a
//    directory lists its names or fails;
//  - the daemon either mounts or refuses with an exit status (no signal).
// The counts per kind are printed at the end (ctest -V shows them).
//
// A flip in the pending journal transaction makes replay stop there, as at
// the torn end of a log after a crash, so the transaction is dropped and
// the file it made is missing (never wrong). fsck reports it when it finds
// the transaction's commit block further on (a note: with async commit a
// crash can leave that too); a flip that destroys the commit block's magic
// or txid leaves nothing to tell it from a crash before the commit, and is
// not reported.
//
// CI runs two offsets per block (about 35 flips); SWEEP_LONG=1 (the
// `long`-labelled ctest) runs twelve offsets per block and every block of
// each metadata kind it found.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/base/endian.h"
#include "core/base/format.h"
#include "tests/integration/image_file.h"
#include "tests/integration/mount_fixture.h"
#include "tests/integration/test_util.h"

namespace stablefs::integ {
namespace {

constexpr int kFsckCorrected = 1;
constexpr int kFsckErrorsLeft = 4;

// What the populated image holds, to compare every read against.
struct Manifest {
  std::map<std::string, std::string> files;                           // path -> contents
  std::map<std::string, std::string> symlinks;                        // path -> target
  std::map<std::string, std::pair<std::string, std::string>> xattrs;  // path -> (name, value)
  std::map<std::string, std::set<std::string>> dirs;                  // path -> names
};

// One block to damage.
struct Target {
  std::string kind;
  std::string base;  // image it is in
  uint64_t block = 0;
  // How fsck -n must report a flip: exit 4, or (a dropped journal
  // transaction) a "journal: transaction" line.
  enum Report { kError, kJournalLine } report = kError;
  // fsck -y repairs it (exit 1), and fsck -n is clean afterwards.
  bool repaired = false;
};

// How the runs of one kind ended.
struct Tally {
  int flips = 0;
  std::map<int, int> fsck_n, fsck_y;  // exit code -> runs
  int mounted = 0, refused = 0;
  int files_ok = 0, files_eio = 0, files_gone = 0;  // gone: ENOENT (name dropped or lost)
  int other_reads_ok = 0, other_reads_failed = 0;   // dirs, symlinks, xattrs
};

// Aborts the mount if the walk takes longer than the deadline: a request
// that never gets an answer then fails with ENOTCONN instead of hanging
// the test. fired() says it had to.
class Watchdog {
 public:
  Watchdog(std::string mnt, pid_t daemon, std::chrono::seconds deadline)
      : thread_([this, mnt, daemon, deadline] {
          std::unique_lock lk(mu_);
          if (cv_.wait_for(lk, deadline, [&] { return done_; })) return;
          fired_ = true;
          lk.unlock();
          kill(daemon, SIGKILL);
          run_command({"fusermount3", "-uz", mnt}, std::chrono::seconds(30));
        }) {}
  ~Watchdog() {
    {
      std::lock_guard lk(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  bool fired() {
    std::lock_guard lk(mu_);
    return fired_;
  }

 private:
  std::mutex mu_;  // protects done_ and fired_
  std::condition_variable cv_;
  bool done_ = false, fired_ = false;
  std::thread thread_;
};

class CorruptionSweep : public RealMount {
 protected:
  std::string image_size() const override { return "32M"; }
  bool mount_in_setup() const override { return false; }

  void populate();
  std::vector<Target> targets();
  void sweep_one(const Target& t, uint64_t offset, Tally* tally);
  // Reads everything in the manifest through mnt(); every violation is a
  // test failure that names `what`.
  void walk(const std::string& what, const Manifest& m, Tally* tally);
  void check_file(const std::string& what, const std::string& rel, const std::string& want,
                  Tally* tally);

  std::string base() const { return dir() + "/base.img"; }
  std::string pending() const { return dir() + "/pending.img"; }

  Manifest manifest_;         // the base image
  std::string pending_file_;  // made by the pending transaction
  uint64_t data_ino_ = 0, frag_ino_ = 0, sub_ino_ = 0, last_sub_file_ino_ = 0;
  std::vector<uint8_t> data_block_;  // the 2nd block of "data", unique in the image
  std::string long_target_;
};

void CorruptionSweep::populate() {
  ASSERT_NO_FATAL_FAILURE(mount());
  std::string data;
  for (int i = 0; i < 3; i++) {
    auto p = unique_block_pattern(100 + i);
    data.append(p.begin(), p.end());
  }
  data += "and a tail";
  data_block_ = unique_block_pattern(101);
  manifest_.files["data"] = data;
  ASSERT_EQ(write_file(path("data"), data), 0);
  ASSERT_EQ(setxattr(path("data").c_str(), "user.k", "a value", 7, 0), 0);
  manifest_.xattrs["data"] = {"user.k", "a value"};
  {
    // Every other block over 64 blocks: more extents than the inode root
    // holds (a leaf), and one block past 8 MiB (an index above the leaves).
    std::string frag(64 * kBlockSize + 1, '\0');
    UniqueFd f = open_fd(path("frag"), O_RDWR | O_CREAT);
    for (int i = 0; i < 64; i += 2) {
      std::string b(kBlockSize, char('a' + i % 26));
      ASSERT_EQ(pwrite(f.get(), b.data(), b.size(), off_t(i) * kBlockSize), ssize_t(b.size()));
      frag.replace(size_t(i) * kBlockSize, kBlockSize, b);
    }
    const off_t far = off_t(3000) * kBlockSize;
    ASSERT_EQ(pwrite(f.get(), "far", 3, far), 3);
    frag.resize(size_t(far) + 3, '\0');
    frag.replace(size_t(far), 3, "far");
    manifest_.files["frag"] = frag;
    ASSERT_EQ(fsync(f.get()), 0);
  }
  ASSERT_EQ(mkdir(path("sub").c_str(), 0755), 0);
  for (int i = 0; i < 20; i++) {
    std::string rel = "sub/file" + std::to_string(i);
    manifest_.files[rel] = "contents of " + rel;
    ASSERT_EQ(write_file(path(rel), manifest_.files[rel]), 0);
    manifest_.dirs["sub"].insert("file" + std::to_string(i));
  }
  long_target_ = std::string(300, 'L');
  ASSERT_EQ(symlink(long_target_.c_str(), path("longlink").c_str()), 0);
  ASSERT_EQ(symlink("data", path("shortlink").c_str()), 0);
  manifest_.symlinks["longlink"] = long_target_;
  manifest_.symlinks["shortlink"] = "data";
  manifest_.dirs[""] = {"data", "frag", "sub", "longlink", "shortlink"};
  data_ino_ = stat_of(path("data")).st_ino;
  frag_ino_ = stat_of(path("frag")).st_ino;
  sub_ino_ = stat_of(path("sub")).st_ino;
  last_sub_file_ino_ = stat_of(path("sub/file19")).st_ino;
  ASSERT_NO_FATAL_FAILURE(unmount_only());
  std::filesystem::copy_file(image(), base(), std::filesystem::copy_options::overwrite_existing);

  // The same with one more file in a committed transaction that was never
  // checkpointed: the daemon is killed after the fsync.
  DaemonLaunch l = launch_daemon(image(), mnt(), {});
  ASSERT_TRUE(l.mounted) << l.log;
  pending_file_ = "pending";
  ASSERT_EQ(write_file(path(pending_file_), "fsync'd before the crash"), 0);
  {
    UniqueFd f = open_fd(path(pending_file_), O_RDONLY);
    ASSERT_EQ(fsync(f.get()), 0);
    UniqueFd d = open_fd(mnt(), O_RDONLY | O_DIRECTORY);
    ASSERT_EQ(fsync(d.get()), 0);
  }
  ASSERT_EQ(kill(l.pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(l.pid, &status, 0), l.pid);
  ASSERT_TRUE(run_command({"fusermount3", "-uz", mnt()}, std::chrono::seconds(30)).ok());
  std::filesystem::copy_file(image(), pending(), std::filesystem::copy_options::overwrite_existing);
}

std::vector<Target> CorruptionSweep::targets() {
  std::vector<Target> out;
  std::string why;
  auto sb = load_superblock(base(), &why);
  EXPECT_TRUE(sb.has_value()) << why;
  if (!sb) return out;
  const bool all = getenv("SWEEP_LONG") != nullptr;
  auto add_meta = [&](const std::string& kind, uint32_t magic, uint64_t owner) {
    auto blocks = find_meta_blocks(base(), sb->data_start, magic, owner);
    EXPECT_FALSE(blocks.empty()) << "no " << kind << " block in the image";
    for (size_t i = 0; i < blocks.size() && (all || i < 1); i++)
      out.push_back({kind, base(), blocks[i]});
  };
  out.push_back({"superblock A", base(), kSuperblockA, Target::kError, true});
  out.push_back({"superblock B", base(), kSuperblockB, Target::kError, true});
  out.push_back({"inode bitmap", base(), sb->inode_bitmap_start, Target::kError, true});
  out.push_back({"block bitmap", base(), sb->block_bitmap_start, Target::kError, true});
  out.push_back({"inode table (root's block)", base(), inode_block(*sb, kRootIno)});
  out.push_back({"inode table (sub's files)", base(), inode_block(*sb, last_sub_file_ino_)});
  add_meta("directory (root)", kMagicDirectory, kRootIno);
  add_meta("directory (sub)", kMagicDirectory, sub_ino_);
  add_meta("extent leaf", kMagicExtentLeaf, frag_ino_);
  add_meta("extent index", kMagicExtentIndex, frag_ino_);
  add_meta("xattr block", kMagicXattr, data_ino_);
  auto data = find_blocks_equal(base(), sb->data_start, data_block_);
  EXPECT_EQ(data.size(), 1u);
  for (uint64_t b : data) {
    out.push_back({"data block", base(), b});
    out.push_back({"checksum table", base(), sb->csum_table_start + b / kChecksumsPerBlock});
  }
  std::vector<uint8_t> target_block(kBlockSize, 0);
  std::copy(long_target_.begin(), long_target_.end(), target_block.begin());
  auto link = find_blocks_equal(base(), sb->data_start, target_block);
  EXPECT_EQ(link.size(), 1u);
  for (uint64_t b : link) out.push_back({"symlink target", base(), b});

  // The pending transaction: from the log tail to its commit block.
  auto psb = load_superblock(pending(), &why);
  EXPECT_TRUE(psb.has_value()) << why;
  if (!psb) return out;
  std::vector<uint64_t> txn;
  for (uint64_t i = 0; i < 256; i++) {
    uint64_t nr = psb->journal_start + (psb->journal_tail + i) % psb->journal_blocks;
    auto b = read_block(pending(), nr);
    if (b.size() != kBlockSize) break;
    txn.push_back(nr);
    if (get_le32(b.data()) == kMagicJournalCommit) break;
  }
  EXPECT_GE(txn.size(), 3u) << "no pending transaction in the log";
  if (txn.size() >= 3) {
    out.push_back({"journal descriptor", pending(), txn.front(), Target::kJournalLine});
    out.push_back({"journal metadata copy", pending(), txn[1], Target::kJournalLine});
    out.push_back({"journal commit", pending(), txn.back(), Target::kJournalLine});
  }
  return out;
}

void CorruptionSweep::check_file(const std::string& what, const std::string& rel,
                                 const std::string& want, Tally* tally) {
  UniqueFd fd = open_fd(path(rel), O_RDONLY);
  if (!fd.ok()) {
    int e = errno;
    EXPECT_TRUE(e == EIO || e == ENOENT || e == EUCLEAN)
        << what << ": open " << rel << ": " << strerror(e);
    (e == ENOENT ? tally->files_gone : tally->files_eio)++;
    return;
  }
  struct stat st;
  if (fstat(fd.get(), &st) == 0) {
    EXPECT_EQ(uint64_t(st.st_size), want.size()) << what << ": size of " << rel;
  }
  // Page by page: each read is the full page (or the tail) or an error.
  bool failed = false;
  for (size_t off = 0; off < want.size(); off += kBlockSize) {
    const size_t len = std::min<size_t>(kBlockSize, want.size() - off);
    std::string buf(len, '\0');
    ssize_t n = pread(fd.get(), buf.data(), len, off_t(off));
    if (n < 0) {
      EXPECT_TRUE(errno == EIO || errno == EUCLEAN)
          << what << ": " << rel << " at " << off << ": " << strerror(errno);
      failed = true;
      continue;
    }
    EXPECT_EQ(size_t(n), len) << what << ": short read of " << rel << " at " << off;
    EXPECT_TRUE(buf.compare(0, size_t(n), want, off, size_t(n)) == 0)
        << what << ": wrong bytes in " << rel << " at " << off;
  }
  // As cat does: read to end of file; a short total without an error is
  // the silent truncation the issue is about.
  std::string all = slurp(path(rel));
  if (all.rfind("<", 0) != 0 || all.size() == want.size())
    EXPECT_TRUE(same_bytes(all, want)) << what << ": " << rel << " read to EOF";
  else
    failed = true;
  (failed ? tally->files_eio : tally->files_ok)++;
  // The size did not change under the failed reads.
  if (fstat(fd.get(), &st) == 0) {
    EXPECT_EQ(uint64_t(st.st_size), want.size()) << what << ": size of " << rel << " after";
  }
}

void CorruptionSweep::walk(const std::string& what, const Manifest& m, Tally* tally) {
  for (const auto& [rel, names] : m.dirs) {
    DIR* d = opendir(path(rel).c_str());
    if (!d) {
      tally->other_reads_failed++;
      continue;
    }
    std::set<std::string> seen;
    errno = 0;
    bool failed = false;
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") seen.insert(n);
    }
    failed = errno != 0;
    closedir(d);
    (failed ? tally->other_reads_failed : tally->other_reads_ok)++;
    if (failed) continue;
    for (const auto& n : names) {
      if (seen.count(n)) continue;
      // A listing without a name is a lie unless the name is really gone
      // (dropped by fsck -y, or lost with the transaction that made it).
      struct stat st;
      EXPECT_NE(lstat(path(rel.empty() ? n : rel + "/" + n).c_str(), &st), 0)
          << what << ": '" << n << "' is missing from the listing of '" << rel
          << "' but can be looked up";
    }
  }
  for (const auto& [rel, want] : m.files) check_file(what, rel, want, tally);
  for (const auto& [rel, target] : m.symlinks) {
    char buf[4096];
    ssize_t n = readlink(path(rel).c_str(), buf, sizeof buf);
    if (n < 0) {
      tally->other_reads_failed++;
      continue;
    }
    tally->other_reads_ok++;
    EXPECT_EQ(std::string(buf, size_t(n)), target) << what << ": readlink " << rel;
  }
  for (const auto& [rel, kv] : m.xattrs) {
    char buf[256];
    ssize_t n = getxattr(path(rel).c_str(), kv.first.c_str(), buf, sizeof buf);
    if (n < 0) {
      EXPECT_NE(errno, ENODATA) << what << ": " << rel << "'s " << kv.first
                                << " vanished instead of failing";
      tally->other_reads_failed++;
      continue;
    }
    tally->other_reads_ok++;
    EXPECT_EQ(std::string(buf, size_t(n)), kv.second) << what << ": " << rel;
  }
}

void CorruptionSweep::sweep_one(const Target& t, uint64_t offset, Tally* tally) {
  const std::string what =
      t.kind + " (block " + std::to_string(t.block) + ", byte " + std::to_string(offset) + ")";
  SCOPED_TRACE(what);
  std::filesystem::copy_file(t.base, image(), std::filesystem::copy_options::overwrite_existing);
  ASSERT_TRUE(flip_byte(image(), t.block * kBlockSize + offset));
  tally->flips++;

  const uint64_t before = hash_file(image());
  CommandResult n = run_fsck({"-n", "--scrub"});
  ASSERT_TRUE(n.exited) << "fsck -n " << n.describe() << "\n" << n.output;
  tally->fsck_n[n.exit_code]++;
  EXPECT_EQ(hash_file(image()), before) << "fsck -n wrote\n" << n.output;
  // The commit block's magic (0..3) and txid (16..23) identify it.
  const bool journal_line =
      t.report == Target::kJournalLine &&
      (t.kind != "journal commit" || (offset >= 4 && (offset < 16 || offset >= 24)));
  if (t.report == Target::kError) {
    EXPECT_EQ(n.exit_code, kFsckErrorsLeft) << "not reported:\n" << n.output;
  } else if (journal_line) {
    EXPECT_NE(n.output.find("journal: transaction"), std::string::npos)
        << "the dropped transaction is not reported:\n"
        << n.output;
  }

  CommandResult y = run_fsck({"-y", "--scrub"});
  ASSERT_TRUE(y.exited) << "fsck -y " << y.describe() << "\n" << y.output;
  tally->fsck_y[y.exit_code]++;
  if (t.repaired) {
    EXPECT_EQ(y.exit_code, kFsckCorrected) << y.output;
    CommandResult again = run_fsck({"-n", "--scrub"});
    EXPECT_TRUE(again.exited && again.exit_code == 0) << "not clean after -y:\n" << again.output;
  }
  EXPECT_TRUE(y.exit_code == 0 || (y.exit_code & ~(kFsckCorrected | kFsckErrorsLeft)) == 0 ||
              y.exit_code == 8)
      << y.output;

  DaemonLaunch l = launch_daemon(image(), mnt(), {});
  if (!l.mounted) {
    ASSERT_FALSE(l.timed_out) << "mount hung\n" << l.log;
    EXPECT_TRUE(WIFEXITED(l.status)) << "daemon " << describe_wait_status(l.status) << "\n"
                                     << l.log;
    tally->refused++;
    return;
  }
  tally->mounted++;
  // The mount's replay drops it too, and says so (its cheaper test needs
  // the txid of the block replay stopped at, or a stop inside the
  // transaction: a flipped descriptor txid (16..23) escapes it).
  if (journal_line && !(t.kind == "journal descriptor" && offset >= 16 && offset < 24)) {
    EXPECT_NE(l.log.find("journal: transaction"), std::string::npos)
        << "the mount did not say it dropped the transaction:\n"
        << l.log;
  }
  Manifest m = manifest_;
  if (t.base == pending()) {
    // Present with its bytes, or (transaction dropped) absent: never wrong.
    m.files[pending_file_] = "fsync'd before the crash";
    m.dirs[""].insert(pending_file_);
  }
  bool hung = false;
  {
    Watchdog dog(mnt(), l.pid, std::chrono::seconds(30));
    walk(what, m, tally);
    hung = dog.fired();
  }
  EXPECT_FALSE(hung) << "the walk of the mount did not finish within 30 s";
  if (hung) {
    int status = 0;
    waitpid(l.pid, &status, 0);
    return;
  }
  int status = stop_daemon(l.pid, mnt());
  EXPECT_TRUE(WIFEXITED(status)) << "daemon " << describe_wait_status(status) << "\n"
                                 << read_file(l.log_path);
}

TEST_F(CorruptionSweep, EveryKindOfBlockFlippedIsReportedAndNeverReadAsShortOrWrongData) {
  ASSERT_NO_FATAL_FAILURE(populate());
  const bool all = getenv("SWEEP_LONG") != nullptr;
  const std::vector<uint64_t> offsets =
      all ? std::vector<uint64_t>{0, 3, 8, 16, 24, 33, 64, 100, 1000, 2049, 4000, 4095}
          : std::vector<uint64_t>{3, 2049};
  std::map<std::string, Tally> tallies;
  std::vector<std::string> order;
  for (const Target& t : targets()) {
    if (!tallies.count(t.kind)) order.push_back(t.kind);
    for (uint64_t off : offsets) {
      ASSERT_NO_FATAL_FAILURE(sweep_one(t, off, &tallies[t.kind]));
    }
  }
  auto codes = [](const std::map<int, int>& m) {
    std::string s;
    for (auto [code, n] : m)
      s += (s.empty() ? "" : " ") + std::to_string(n) + "x" + std::to_string(code);
    return s;
  };
  std::printf("%-28s %5s %-14s %-14s %7s %7s %5s %5s %5s %9s\n", "kind", "flips", "fsck -n exit",
              "fsck -y exit", "mounted", "refused", "ok", "EIO", "gone", "other ok/err");
  for (const auto& kind : order) {
    const Tally& t = tallies[kind];
    std::printf("%-28s %5d %-14s %-14s %7d %7d %5d %5d %5d %5d/%d\n", kind.c_str(), t.flips,
                codes(t.fsck_n).c_str(), codes(t.fsck_y).c_str(), t.mounted, t.refused, t.files_ok,
                t.files_eio, t.files_gone, t.other_reads_ok, t.other_reads_failed);
  }
}

}  // namespace
}  // namespace stablefs::integ
