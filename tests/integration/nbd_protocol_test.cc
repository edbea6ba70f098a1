// What a mounted stablefs puts on the NBD wire, read from nbdkit's log
// filter, which writes one line per request the server receives (and one
// per reply) in the order it handles them.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/nbd_mount.h"

namespace stablefs::integ {
namespace {

// One line of the log filter: a request ("connection=1 Write id=4
// offset=0x2000 count=0x1000 fua=1 ...") or its reply ("connection=1
// ...Write id=4 return=0").
struct WireLine {
  std::string op;  // Write, Flush, Trim, Read, ...
  bool reply = false;
  int connection = 0;
  uint64_t id = 0;  // pairs a reply with its request
  uint64_t offset = 0, count = 0;
  bool fua = false;  // requests only
};

std::vector<WireLine> parse_wire_log(const std::string& text) {
  std::vector<WireLine> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto at = line.find(" connection=");
    if (at == std::string::npos) continue;
    std::istringstream words(line.substr(at + 1));
    std::string conn, op;
    words >> conn >> op;
    WireLine w;
    if (conn.rfind("connection=", 0) == 0) w.connection = std::stoi(conn.substr(11));
    w.reply = op.rfind("...", 0) == 0;
    w.op = w.reply ? op.substr(3) : op;
    std::string field;
    while (words >> field) {
      if (field.rfind("offset=", 0) == 0) w.offset = std::stoull(field.substr(7), nullptr, 16);
      if (field.rfind("count=", 0) == 0) w.count = std::stoull(field.substr(6), nullptr, 16);
      if (field.rfind("id=", 0) == 0) w.id = std::stoull(field.substr(3));
      if (field == "fua=1") w.fua = true;
    }
    out.push_back(w);
  }
  return out;
}

struct CommandCount {
  int writes = 0, fua_writes = 0, flushes = 0, trims = 0;
};

CommandCount count_requests(const std::vector<WireLine>& lines) {
  CommandCount c;
  for (const WireLine& w : lines) {
    if (w.reply) continue;
    if (w.op == "Write") c.writes++, c.fua_writes += w.fua;
    if (w.op == "Flush") c.flushes++;
    if (w.op == "Trim") c.trims++;
  }
  return c;
}

class NbdProtocol : public NbdMount {
 protected:
  std::string wire_log_path() const { return dir() + "/wire.log"; }
  // The log since byte `from` of the file.
  std::vector<WireLine> wire_since(size_t from) const {
    std::string all = read_file(wire_log_path());
    return parse_wire_log(from < all.size() ? all.substr(from) : std::string());
  }
  size_t wire_size() const { return read_file(wire_log_path()).size(); }

  // nbdkit file over image() with the log filter outermost (it sees what
  // the client sends) and `filters` inside it.
  void serve_logged(const std::vector<std::string>& filters) {
    std::vector<std::string> args = {"--filter=log"};
    args.insert(args.end(), filters.begin(), filters.end());
    args.insert(args.end(), {"file", image(), "logfile=" + wire_log_path()});
    ASSERT_NO_FATAL_FAILURE(serve(args));
  }

  // The requests one fsync of a rewritten page sends: a page of a file
  // fsync'd before, so with journal_data= the commit carries the page in the
  // log and references no data block written outside it.
  std::vector<WireLine> unlink_of_a_file(const std::string& mount_opts);

  CommandCount fsync_of_a_rewrite() {
    mount_nbd({"-o", "commit=3600,noatime"});
    if (HasFatalFailure()) return {};
    EXPECT_EQ(write_and_fsync(path("f"), pattern(64 * 1024, 'w')), 0);
    UniqueFd fd = open_fd(path("f"), O_WRONLY);
    EXPECT_TRUE(fd.ok()) << strerror(errno);
    std::string page = pattern(4096, 'p');
    EXPECT_EQ(::pwrite(fd.get(), page.data(), page.size(), 8192), ssize_t(page.size()));
    size_t from = wire_size();
    EXPECT_EQ(::fsync(fd.get()), 0) << strerror(errno);
    CommandCount c = count_requests(wire_since(from));
    fd.reset();
    EXPECT_EQ(WEXITSTATUS(unmount_nbd()), 0) << log();
    server_.reset();
    return c;
  }
};

// With FUA advertised, the commit of an fsync'd rewrite is its log writes
// sent with FUA and no flush: one round trip. The same server with FUA
// hidden (nbdkit's fua filter in its default mode) gets the same writes plain and
// then a flush: two round trips.
TEST_F(NbdProtocol, CommitCostsOneRoundTripLessWhenTheServerHasFua) {
  ASSERT_NO_FATAL_FAILURE(serve_logged({}));
  CommandCount fua = fsync_of_a_rewrite();
  ASSERT_FALSE(HasFatalFailure());
  // The fua filter's default mode hides FUA (1.32 refuses its name, none).
  ASSERT_NO_FATAL_FAILURE(serve_logged({"--filter=fua"}));
  CommandCount plain = fsync_of_a_rewrite();
  ASSERT_FALSE(HasFatalFailure());
  std::printf("[nbd wire] fsync of a rewrite: with FUA %d writes (%d FUA), %d flushes; "
              "without %d writes, %d flushes\n",
              fua.writes, fua.fua_writes, fua.flushes, plain.writes, plain.flushes);

  EXPECT_GE(fua.writes, 1);
  EXPECT_EQ(fua.fua_writes, fua.writes);
  EXPECT_EQ(fua.flushes, 0);
  EXPECT_EQ(plain.fua_writes, 0);
  EXPECT_EQ(plain.writes, fua.writes);
  EXPECT_EQ(plain.flushes, 1);
  CommandResult c = run_command({fsck_bin(), "--scrub", image()}, std::chrono::seconds(120));
  EXPECT_TRUE(c.ok()) << c.describe() << "\n" << c.output;
}

// The requests an fsync'd unlink of a 1 MiB file sends (the file was
// written and fsync'd first), with `mount_opts`.
std::vector<WireLine> NbdProtocol::unlink_of_a_file(const std::string& mount_opts) {
  mount_nbd({"-o", mount_opts});
  if (HasFatalFailure()) return {};
  EXPECT_EQ(write_and_fsync(path("big"), pattern(1 << 20, 'b')), 0);
  UniqueFd dirfd = open_fd(mnt(), O_RDONLY | O_DIRECTORY);
  EXPECT_TRUE(dirfd.ok()) << strerror(errno);
  size_t from = wire_size();
  uint64_t free_before = free_bytes(mnt());
  EXPECT_EQ(::unlink(path("big").c_str()), 0) << strerror(errno);
  EXPECT_TRUE(wait_for_freed(mnt(), free_before, 1 << 20)) << "the blocks were never freed";
  EXPECT_EQ(::fsync(dirfd.get()), 0) << strerror(errno);
  std::vector<WireLine> lines = wire_since(from);
  dirfd.reset();
  EXPECT_EQ(WEXITSTATUS(unmount_nbd()), 0) << log();
  return lines;
}

// mount -o discard: freed blocks are trimmed, and only once the commit
// that freed them is durable. On the wire: before the first Trim, every
// write sent (the freeing commit's among them) has been made durable (a
// flush replied after it, or it was a FUA write and replied). The trims
// cover at least the file's 1 MiB. Without the option nothing is trimmed.
TEST_F(NbdProtocol, TrimIsSentOnlyAfterTheFreeingCommitIsDurable) {
  ASSERT_NO_FATAL_FAILURE(serve_logged({}));
  std::vector<WireLine> lines = unlink_of_a_file("commit=3600,discard");
  ASSERT_FALSE(HasFatalFailure());
  size_t first_trim = lines.size();
  uint64_t trimmed = 0;
  for (size_t i = 0; i < lines.size(); i++) {
    if (lines[i].reply || lines[i].op != "Trim") continue;
    first_trim = std::min(first_trim, i);
    trimmed += lines[i].count;
  }
  ASSERT_LT(first_trim, lines.size()) << "no trim after the unlink";
  EXPECT_GE(trimmed, uint64_t(1) << 20);
  // Walk up to the first trim. A write is durable once it replied with FUA,
  // or once a flush replied that was sent after the write replied (NBD: a
  // flush covers the writes completed before it).
  std::map<uint64_t, bool> not_durable;  // write id -> replied
  std::map<uint64_t, std::vector<uint64_t>> flush_covers;
  std::set<uint64_t> fua_ids;
  int writes = 0;
  for (size_t i = 0; i < first_trim; i++) {
    const WireLine& w = lines[i];
    if (w.op == "Write" && !w.reply) {
      writes++;
      not_durable[w.id] = false;
      if (w.fua) fua_ids.insert(w.id);
    } else if (w.op == "Write") {
      if (fua_ids.count(w.id)) not_durable.erase(w.id);
      else not_durable[w.id] = true;
    } else if (w.op == "Flush" && !w.reply) {
      for (auto [id, replied] : not_durable)
        if (replied) flush_covers[w.id].push_back(id);
    } else if (w.op == "Flush") {
      for (uint64_t id : flush_covers[w.id]) not_durable.erase(id);
    }
  }
  EXPECT_GE(writes, 1) << "the freeing commit wrote nothing before the trims";
  EXPECT_TRUE(not_durable.empty())
      << not_durable.size() << " writes not yet durable when the first trim went out";

  server_.reset();
  ASSERT_NO_FATAL_FAILURE(serve_logged({}));
  EXPECT_EQ(count_requests(unlink_of_a_file("commit=3600")).trims, 0)
      << "trims without the discard option";
  CommandResult c = run_command({fsck_bin(), "--scrub", image()}, std::chrono::seconds(120));
  EXPECT_TRUE(c.ok()) << c.describe() << "\n" << c.output;
}

// nbdkit's file plugin advertises multi-conn: the daemon opens 4
// connections by default and its requests use them all; nbd_conns=1 keeps
// it on one.
TEST_F(NbdProtocol, DaemonSpreadsOverFourConnectionsUnlessToldOtherwise) {
  auto connections_used = [&](const std::vector<std::string>& args) {
    size_t from = wire_size();
    mount_nbd(args);
    EXPECT_EQ(write_and_fsync(path("f"), pattern(4 << 20, 'c')), 0);
    EXPECT_EQ(WEXITSTATUS(unmount_nbd()), 0) << log();
    int used = 0;
    for (int c = 1; c <= 8; c++) {
      bool wrote = false;
      for (const WireLine& w : wire_since(from))
        wrote |= w.connection == c && w.op == "Write" && !w.reply;
      used += wrote;
    }
    return used;
  };
  ASSERT_NO_FATAL_FAILURE(serve_logged({}));
  EXPECT_EQ(connections_used({}), 4);
  server_.reset();
  ASSERT_NO_FATAL_FAILURE(serve_logged({}));
  EXPECT_EQ(connections_used({"-o", "nbd_conns=1"}), 1);
}

}  // namespace
}  // namespace stablefs::integ
