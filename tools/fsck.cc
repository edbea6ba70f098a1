// fsck.stablefs: `fsck.stablefs [--scrub] [-n | -y | -p | --repair] TARGET`.
//
// Exit codes follow e2fsck, because fsck(8) and boot scripts read them,
// and are summed as e2fsck's are: 0 clean; 1 corrections were written
// (journal replayed, a superblock copy rewritten, repairs made) and
// nothing is left;
// 4 errors left uncorrected (with -n: also a correction it did not make);
// 8 operational error; 16 usage error. The flags fsck(8) passes to every
// checker (-a -p -y -n -f -v -C) are accepted so `fsck -t stablefs`
// works; -C FD writes progress lines in e2fsck's format.
#include <limits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

#include "core/fsck.h"
#include "core/io/open_device.h"
#include "tools/counting_device.h"
#include "tools/progress_display.h"
#include "tools/tool_cli.h"
#include "tools/version.h"

namespace stablefs {
namespace {

constexpr int kExitClean = 0;
constexpr int kExitCorrected = 1;
constexpr int kExitUncorrected = 4;
constexpr int kExitOperational = 8;
constexpr int kExitUsage = 16;

void print_usage(FILE* out) {
  std::fprintf(out,
      "usage: fsck.stablefs [--scrub] [-n | -y | -p | -a | --repair] [-f] [-v] [-q] [-C FD]\n"
      "                     TARGET\n"
      "\n"
      "Checks the stablefs filesystem in TARGET (an image file, a block device or\n"
      "an NBD URI: nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH),\n"
      "which must not be mounted: superblocks, bitmaps, inodes, extent maps, block\n"
      "ownership and counts, directories and link counts, symlink targets, xattr\n"
      "records, checksum table blocks.\n"
      "\n"
      "Without -n it writes what a mount would write anyway, and reports each as a\n"
      "correction: it replays the journal (and records the new log tail in both\n"
      "superblocks), and rewrites a superblock copy that is invalid from the valid\n"
      "one. Structural repairs need -p or -y; they go through the journal, so a\n"
      "crash during them leaves the image as it was or repaired. What has no safe\n"
      "fix is reported and left: a data block that fails its checksum (its\n"
      "checksum is never recomputed over the bad bytes), a corrupt metadata block\n"
      "(other than a bitmap block, which is rebuilt),\n"
      "a block two inodes claim, a directory with two names, an inode in use in no\n"
      "directory.\n"
      "\n"
      "  --scrub      also read every data block and verify it against its checksum\n"
      "  -n           write nothing at all: the journal is replayed in memory only\n"
      "               (the checks see the replayed filesystem), and a journal to\n"
      "               replay or a superblock copy to rewrite is reported and left,\n"
      "               which counts as an error left uncorrected (exit 4)\n"
      "  -p, -a       repair what is safe unattended: bitmaps against what is\n"
      "               reachable (a corrupt bitmap block is rebuilt; leaked blocks'\n"
      "               checksum entries are zeroed), link\n"
      "               and block counts, '..' pointers, entry types, orphaned inodes\n"
      "  -y, --repair also drop directory entries that name free or invalid inodes,\n"
      "               and free inodes of an invalid file type\n"
      "  -f, -v       accepted for fsck(8) compatibility (every check is full)\n"
      "  -C FD        write progress lines \"1 DONE TOTAL TARGET\" (inode table blocks\n"
      "               checked) to file descriptor FD, as e2fsck; -C 0 draws the\n"
      "               progress line on stdout if it is a terminal\n"
      "  -q           print nothing but problems and corrections\n"
      "  -h, --help   this text\n"
      "  -V, --version  version of fsck.stablefs and of its libraries\n"
      "\n"
      "On a terminal (stderr) it shows its progress: percent, MiB/s read and the\n"
      "time left, on one line redrawn in place.\n"
      "\n"
      "Exit status, summed as e2fsck's: 0 no errors; 1 corrections written (journal\n"
      "replayed, superblock copy rewritten, repairs) and no errors left; 4 errors left\n"
      "uncorrected; 8 operational error (cannot open, in use, not a stablefs image,\n"
      "I/O error); 16 usage error.\n");
}

const ToolCli cli("fsck.stablefs", print_usage,
                  {uring_version(), xxhash_version()}, kExitUsage);

struct CommandLine {
  std::string target;
  bool scrub = false;
  FsckRepair repair = FsckRepair::kNone;  // -p/-a, -y/--repair
  bool read_only = false;
  bool quiet = false;
  int progress_fd = -1;  // -C
};

CommandLine parse_command_line(int argc, char** argv) {
  CommandLine cl;
  bool have_target = false;
  std::string why;  // of a bad -C
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (ToolCli::is_help_or_version(a)) {
      cli.answer(a);
    } else if (a == "--scrub") {
      cl.scrub = true;
    } else if (a == "--repair" || a == "-y") {
      cl.repair = FsckRepair::kAll;
    } else if (a == "-p" || a == "-a") {
      if (cl.repair == FsckRepair::kNone) cl.repair = FsckRepair::kPreen;
    } else if (a == "-n") {
      cl.read_only = true;
    } else if (a == "-f" || a == "-v") {
      // Every run is a full check; verbosity is fixed.
    } else if (auto fd = match_progress_option(argc, argv, &i, &why); !fd.ok() || *fd) {
      if (!fd.ok()) cli.usage_error(why);
      cl.progress_fd = **fd;
    } else if (a == "-q") {
      cl.quiet = true;
    } else if (!a.empty() && a[0] == '-') {
      cli.usage_error("unknown option '" + a + "'");
    } else if (have_target) {
      cli.usage_error("only one TARGET, please");
    } else {
      cl.target = a;
      have_target = true;
    }
  }
  if (!have_target) cli.usage_error("no TARGET given");
  if (cl.read_only && cl.repair != FsckRepair::kNone)
    cli.usage_error("-n cannot be combined with -y, -p, -a or --repair");
  return cl;
}

int summarize(const CommandLine& cl, const FsckResult& res);

int check(const CommandLine& cl) {
  const char* target = cl.target.c_str();
  OpenOptions oo;
  // A daemon that is only finishing an unmount still holds the image for
  // a moment: wait for it. An image that is mounted is refused at once.
  {
    char real[PATH_MAX];
    // A mount's source is the canonical path of an image, or the URI as
    // given for an NBD export.
    bool mounted = is_nbd_uri(cl.target)
                       ? is_mount_source(cl.target)
                       : ::realpath(cl.target.c_str(), real) && is_mount_source(real);
    oo.busy_wait_ms = mounted ? 0 : 10000;
  }
  oo.read_only = cl.read_only;
  oo.exclusive = true;
  auto dev = open_device(cl.target, oo);
  if (!dev.ok()) {
    std::fprintf(stderr, "fsck.stablefs: cannot open %s: %s\n", target,
                 dev.error() == EBUSY     ? "in use (mounted?)"
                 : dev.error() == ENOTBLK ? "neither an image file nor a block device"
                                          : std::strerror(dev.error()));
    return kExitOperational;
  }

  CountingDevice counted(**dev);
  ProgressDisplay progress(progress_targets(cl.quiet, cl.progress_fd, cl.target),
                           [&] { return counted.bytes_transferred(); });
  // One pass, as e2fsck's pass 1: the core reports progress over the inode
  // table, and with --scrub each file's data is read as its inode is met.
  progress.start_phase(1, cl.scrub ? "checking and scrubbing" : "checking");
  FsckOptions fo;
  fo.scrub = cl.scrub;
  fo.read_only = cl.read_only;
  fo.repair = cl.repair;
  fo.report = [&](const std::string& line) {
    if (cl.quiet && line.rfind("note: ", 0) == 0) return;
    progress.clear_line();  // a problem line never lands on the progress line
    std::fprintf(stdout, "%s: %s\n", target, line.c_str());
    std::fflush(stdout);
  };
  fo.progress = progress.callback();
  auto r = check_filesystem(counted, fo);
  progress.finish();
  if (!r.ok()) {
    std::fprintf(stderr, "fsck.stablefs: cannot check %s: %s\n", target,
                 r.error() == EUCLEAN ? "not a stablefs image, or both superblocks are corrupt"
                                      : std::strerror(r.error()));
    return kExitOperational;
  }
  return summarize(cl, *r);
}

// The one summary line, and the exit status it stands for.
int summarize(const CommandLine& cl, const FsckResult& res) {
  const char* target = cl.target.c_str();
  // A block whose bytes don't match their checksum is an error even if
  // the checker counts it separately; a correction -n did not make leaves
  // the image as much in need of fsck as an error does.
  const uint64_t left = res.errors + res.checksum_mismatches + res.corrections_skipped;
  const bool bad = res.errors != 0 || res.checksum_mismatches != 0;
  const char* verdict = bad                       ? "ERRORS FOUND"
                        : res.corrections_skipped ? "CORRECTIONS NEEDED (not made: -n)"
                        : res.corrections         ? "clean after corrections"
                                                  : "clean";
  if (!cl.quiet || left != 0 || res.corrections != 0) {
    std::printf("%s: %s: %" PRIu64 " inodes, %" PRIu64 " directories, %" PRIu64
                " data blocks; %" PRIu64 " journal transactions replayed%s",
                target, verdict, res.inodes, res.directories, res.data_blocks,
                res.journal_transactions_replayed, cl.read_only ? " in memory" : "");
    if (cl.scrub)
      std::printf("; %" PRIu64 " blocks scrubbed, %" PRIu64 " checksum mismatches",
                  res.blocks_scrubbed, res.checksum_mismatches);
    std::printf("; %" PRIu64 " corrections, %" PRIu64 " errors\n", res.corrections, res.errors);
  }
  if (bad && cl.repair == FsckRepair::kPreen)
    std::printf("%s: UNEXPECTED INCONSISTENCY: the errors above have no fix -p may make "
                "unattended; run fsck.stablefs -y (or without -p) by hand\n",
                target);
  return (res.corrections ? kExitCorrected : 0) | (left ? kExitUncorrected : 0);
}

}  // namespace
}  // namespace stablefs

int main(int argc, char** argv) {
  return stablefs::check(stablefs::parse_command_line(argc, argv));
}
