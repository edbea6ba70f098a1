// mkfs.stablefs: `mkfs.stablefs [--size SIZE] [--force] [-L LABEL] [-U UUID]
// [-C FD] TARGET`.
//
// Refuses to overwrite an existing stablefs without --force: one typo in a
// device name must not cost a user their data.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <string>

#include "core/base/endian.h"
#include "core/base/format.h"
#include "core/io/open_device.h"
#include "core/mkfs.h"
#include "fs/options.h"  // parse_size
#include "journal/buffer.h"
#include "tools/counting_device.h"
#include "tools/fs_identity.h"
#include "tools/progress_display.h"
#include "tools/tool_cli.h"
#include "tools/version.h"

namespace stablefs {
namespace {

void print_usage(FILE* out) {
  std::fprintf(out,
      "usage: mkfs.stablefs [--size SIZE] [--force] [-L LABEL] [-U UUID] [--preallocate]\n"
      "                     [-q] [-C FD] TARGET\n"
      "\n"
      "Creates a stablefs filesystem on TARGET, an image file, a block device or\n"
      "an NBD export (nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH),\n"
      "using all of it.\n"
      "\n"
      "  -s, --size SIZE  create TARGET as an image file of SIZE bytes (K/M/G/T\n"
      "                   suffixes, binary; at least 16M). Needed when TARGET does\n"
      "                   not exist; also allowed on an existing empty file.\n"
      "  -f, --force      overwrite a filesystem already on TARGET\n"
      "  -L, --label LABEL\n"
      "                   name the filesystem (at most 63 bytes; stablefs-stat and\n"
      "                   stablefs-dump show it)\n"
      "  -U, --uuid UUID  use this UUID (8-4-4-4-12 hex digits), not a random one\n"
      "  -E lazy_init=0|1 1 (default): write only the start of the inode table,\n"
      "                   bitmaps and checksum table; the filesystem initialises\n"
      "                   the rest as it grows (fast on any size). 0: write all\n"
      "                   of it, the layout that binaries from before the feature\n"
      "                   mount (core/FORMAT.md)\n"
      "  --preallocate    image files only: also write zeros over the data region,\n"
      "                   so the image holds all its space on the host and the\n"
      "                   host filesystem never allocates under an fsync (faster\n"
      "                   commits of new data; costs the image's full size and\n"
      "                   the time to write it). The discard mount option gives\n"
      "                   freed space back to the host, undoing it there\n"
      "  -q, --quiet      print nothing but errors\n"
      "  -C FD            write progress lines \"1 DONE TOTAL TARGET\" (blocks of\n"
      "                   metadata written) to file descriptor FD, as e2fsck -C\n"
      "  -h, --help       this text\n"
      "  -V, --version    version of mkfs.stablefs and of its libraries\n"
      "\n"
      "On a terminal (stderr) it shows the progress of writing the metadata: percent,\n"
      "MiB/s and the time left, on one line redrawn in place.\n"
      "\n"
      "Exit status: 0 on success, 1 on failure, 2 for a usage error.\n");
}

const ToolCli cli("mkfs.stablefs", print_usage,
                  {uring_version(), xxhash_version()});

struct CommandLine {
  std::string target;
  std::optional<uint64_t> size;
  bool force = false;
  bool quiet = false;
  int progress_fd = -1;  // -C
  std::string label;
  std::optional<Uuid> uuid;
  bool lazy_init = true;  // -E lazy_init=
  bool preallocate = false;
};

uint64_t parse_size_arg(const std::string& s) {
  auto n = parse_size(s);
  if (!n.ok()) cli.usage_error("invalid size '" + s + "' (expected e.g. 64M, 1G)");
  return *n;
}

std::string label_arg(const std::string& s) {
  std::string why;
  if (!check_label(s, &why).ok()) cli.usage_error(why);
  return s;
}

Uuid uuid_arg(const std::string& s) {
  std::string why;
  auto u = parse_uuid(s, &why);
  if (!u.ok()) cli.usage_error(why);
  return *u;
}

CommandLine parse_command_line(int argc, char** argv) {
  CommandLine cl;
  bool have_target = false;
  std::string why;  // of a bad -C
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (ToolCli::is_help_or_version(a)) {
      cli.answer(a);
    } else if (a == "-s" || a == "--size") {
      if (i + 1 >= argc) cli.usage_error(a + " needs a size");
      cl.size = parse_size_arg(argv[++i]);
    } else if (a.rfind("--size=", 0) == 0) {
      cl.size = parse_size_arg(a.substr(7));
    } else if (a == "-f" || a == "--force") {
      cl.force = true;
    } else if (a == "-L" || a == "--label") {
      if (i + 1 >= argc) cli.usage_error(a + " needs a label");
      cl.label = label_arg(argv[++i]);
    } else if (a.rfind("--label=", 0) == 0) {
      cl.label = label_arg(a.substr(8));
    } else if (a == "-U" || a == "--uuid") {
      if (i + 1 >= argc) cli.usage_error(a + " needs a UUID");
      cl.uuid = uuid_arg(argv[++i]);
    } else if (a.rfind("--uuid=", 0) == 0) {
      cl.uuid = uuid_arg(a.substr(7));
    } else if (a == "-E") {
      if (i + 1 >= argc) cli.usage_error("-E needs an extended option (lazy_init=0 or 1)");
      std::string e = argv[++i];
      if (e == "lazy_init=0" || e == "lazy_init=1")
        cl.lazy_init = e.back() == '1';
      else
        cli.usage_error("unknown extended option '" + e + "' (known: lazy_init=0, lazy_init=1)");
    } else if (a == "--preallocate") {
      cl.preallocate = true;
    } else if (a == "-q" || a == "--quiet") {
      cl.quiet = true;
    } else if (auto fd = match_progress_option(argc, argv, &i, &why); !fd.ok() || *fd) {
      if (!fd.ok()) cli.usage_error(why);
      cl.progress_fd = **fd;
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
  return cl;
}

// Whether either superblock slot starts with the stablefs magic. Read with
// plain pread so that a damaged filesystem (bad checksum, odd size) still
// counts as one: only the magic matters for "is there data here?".
bool holds_stablefs(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool found = false;
  for (uint64_t blk : {kSuperblockA, kSuperblockB}) {
    uint8_t magic[8];
    if (::pread(fd, magic, sizeof(magic), off_t(blk * kBlockSize)) == ssize_t(sizeof(magic)) &&
        get_le64(magic) == kSuperMagic)
      found = true;
  }
  ::close(fd);
  return found;
}

std::string mib(uint64_t blocks) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f MiB", double(blocks) * kBlockSize / (1 << 20));
  return buf;
}

void print_summary(const std::string& target, const Superblock& sb) {
  std::printf("stablefs created on %s\n", target.c_str());
  if (!sb.label.empty()) std::printf("  label:        %s\n", sb.label.c_str());
  std::printf("  uuid:         %s\n", format_uuid(sb.uuid).c_str());
  std::printf("  blocks:       %" PRIu64 " of %u bytes (%s)\n", sb.total_blocks, sb.block_size,
              mib(sb.total_blocks).c_str());
  std::printf("  data blocks:  %" PRIu64 " (%s)\n", sb.total_blocks - sb.data_start,
              mib(sb.total_blocks - sb.data_start).c_str());
  std::printf("  inodes:       %" PRIu64 "\n", sb.inode_count);
  std::printf("  journal:      %" PRIu64 " blocks (%s)\n", sb.journal_blocks,
              mib(sb.journal_blocks).c_str());
}

int fail(const std::string& target, const std::string& what) {
  std::fprintf(stderr, "mkfs.stablefs: %s: %s\n", target.c_str(), what.c_str());
  return kExitFailure;
}

// A superblock magic in either copy, read through the device.
bool device_holds_stablefs(BlockDevice& dev) {
  AlignedBlock block;
  for (uint64_t blk : {kSuperblockA, kSuperblockB})
    if (blk < dev.block_count() && dev.read(blk, block.data(), kBlockSize).ok() &&
        get_le64(block.data()) == kSuperMagic)
      return true;
  return false;
}

// The export's size is the server's: nothing to create or size here.
Result<std::unique_ptr<BlockDevice>> open_nbd_target(const CommandLine& cl, std::string* what) {
  if (cl.size) {
    *what = "--size does not apply to an NBD export: the server sets its size";
    return err(EINVAL);
  }
  if (cl.preallocate) {
    *what = "--preallocate is for image files: an NBD server manages its export's space";
    return err(EINVAL);
  }
  OpenOptions oo;
  oo.exclusive = true;
  auto dev = open_device(cl.target, oo);
  if (!dev.ok()) {
    *what = dev.error() == EBUSY ? "in use (mounted, or being checked)"
                                 : std::string("cannot connect: ") + std::strerror(dev.error());
    return err(dev.error());
  }
  if (device_holds_stablefs(**dev) && !cl.force) {
    *what = "already holds a stablefs filesystem; use --force to overwrite it";
    return err(EEXIST);
  }
  return dev;
}

int make_on(const CommandLine& cl, BlockDevice& dev, bool created);

int make(const CommandLine& cl) {
  const std::string& target = cl.target;
  if (is_nbd_uri(target)) {
    std::string what;
    auto dev = open_nbd_target(cl, &what);
    if (!dev.ok()) return fail(target, what);
    return make_on(cl, **dev, false);
  }
  struct stat st {};
  bool exists = ::stat(target.c_str(), &st) == 0;
  if (!exists && errno != ENOENT) return fail(target, std::strerror(errno));
  if (cl.preallocate && exists && !S_ISREG(st.st_mode))
    return fail(target, "--preallocate is for image files: a device has no holes to fill");

  OpenOptions oo;
  oo.exclusive = true;
  bool created = false;
  if (!exists || (S_ISREG(st.st_mode) && st.st_size == 0)) {
    if (!cl.size) {
      return fail(target, exists ? "the file is empty; give --size to set the image size"
                                 : "does not exist; give --size to create an image file");
    }
    if (*cl.size < kMinBlocks * kBlockSize) return fail(target, "size too small: minimum is 16 MiB");
    if (exists && ::truncate(target.c_str(), off_t(*cl.size - *cl.size % kBlockSize)) != 0)
      return fail(target, std::strerror(errno));
    oo.create = !exists;
    oo.create_size = *cl.size;
    created = !exists;
  } else {
    if (cl.size)
      return fail(target, "already exists; --size only applies to a new or empty image file");
    if (holds_stablefs(target) && !cl.force)
      return fail(target, "already holds a stablefs filesystem; use --force to overwrite it");
  }

  auto dev = open_device(target, oo);
  if (!dev.ok()) {
    if (created) ::unlink(target.c_str());
    return fail(target, dev.error() == EBUSY     ? "in use (mounted, or being checked)"
                        : dev.error() == ENOTBLK ? "neither an image file nor a block device"
                                                 : std::strerror(dev.error()));
  }
  return make_on(cl, **dev, created);
}

int make_on(const CommandLine& cl, BlockDevice& dev, bool created) {
  const std::string& target = cl.target;
  CountingDevice counted(dev);
  ProgressDisplay progress(progress_targets(cl.quiet, cl.progress_fd, target),
                           [&] { return counted.bytes_transferred(); });
  progress.start_phase(1, "writing metadata");
  MkfsOptions mo;
  mo.progress = progress.callback();
  mo.label = cl.label;
  mo.uuid = cl.uuid;
  mo.lazy_init = cl.lazy_init;
  Status s = make_filesystem(counted, mo);
  progress.finish();
  if (!s.ok()) {
    if (created) ::unlink(target.c_str());  // don't leave a half-made image behind
    return fail(target, s.error() == ENOSPC ? "size too small: minimum is 16 MiB"
                                            : std::strerror(s.error()));
  }

  AlignedBlock block;
  std::string why;
  if (Status r = dev.read(kSuperblockA, block.data(), kBlockSize); !r.ok())
    return fail(target, std::string("cannot read back the superblock: ") + std::strerror(r.error()));
  auto sb = decode_superblock(block.data(), kSuperblockA, dev.block_count(), &why);
  if (!sb.ok()) return fail(target, "the new superblock does not verify: " + why);
  if (cl.preallocate) {
    progress.start_phase(2, "preallocating the data region");
    Status p = preallocate_data(counted, *sb, progress.callback());
    progress.finish();
    // The filesystem itself is complete: keep the image, say what is missing.
    if (!p.ok())
      return fail(target, std::string("the filesystem is made, but writing its data region "
                                      "failed (the image stays sparse there): ") +
                              std::strerror(p.error()));
  }
  if (!cl.quiet) print_summary(target, *sb);
  return kExitOk;
}

}  // namespace
}  // namespace stablefs

int main(int argc, char** argv) {
  return stablefs::make(stablefs::parse_command_line(argc, argv));
}
