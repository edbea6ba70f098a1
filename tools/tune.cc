// stablefs-tune: `stablefs-tune -L LABEL TARGET` changes the label of an
// unmounted stablefs, as tune2fs -L does for ext4.
//
// It takes the superblock a mount would take (the primary if valid, else
// the backup), changes the label and nothing else, and writes both copies
// the way a mount does: A, flush, B, flush, so a crash in between leaves
// one valid copy. The journal needs no replay first: superblocks are never
// journalled, and the tail they record is kept.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/base/format.h"
#include "core/io/open_device.h"
#include "journal/buffer.h"
#include "tools/fs_identity.h"
#include "tools/superblock_copies.h"
#include "tools/tool_cli.h"
#include "tools/version.h"

namespace stablefs {
namespace {

void print_usage(FILE* out) {
  std::fprintf(out,
      "usage: stablefs-tune -L LABEL TARGET\n"
      "\n"
      "Changes the label of the stablefs in TARGET (an image file or a block device),\n"
      "which must not be mounted. An empty LABEL removes the label.\n"
      "\n"
      "  -L, --label LABEL  the new label: at most 63 bytes, no control characters\n"
      "  -h, --help         this text\n"
      "  -V, --version      version of stablefs-tune and of its libraries\n"
      "\n"
      "Exit status: 0 changed; 1 not changed (in use, not stablefs, I/O error); 2 usage.\n");
}

const ToolCli cli("stablefs-tune", print_usage,
                  {uring_version(), xxhash_version()});

struct CommandLine {
  std::string target;
  std::string label;
};

CommandLine parse_command_line(int argc, char** argv) {
  CommandLine cl;
  bool have_label = false, have_target = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (ToolCli::is_help_or_version(a)) {
      cli.answer(a);
    } else if (a == "-L" || a == "--label") {
      if (i + 1 >= argc) cli.usage_error(a + " needs a label");
      cl.label = argv[++i];
      have_label = true;
    } else if (a.rfind("--label=", 0) == 0) {
      cl.label = a.substr(8);
      have_label = true;
    } else if (!a.empty() && a[0] == '-') {
      cli.usage_error("unknown option '" + a + "'");
    } else if (have_target) {
      cli.usage_error("only one TARGET, please");
    } else {
      cl.target = a;
      have_target = true;
    }
  }
  if (!have_label) cli.usage_error("nothing to change: give -L LABEL");
  std::string why;
  if (!check_label(cl.label, &why).ok()) cli.usage_error(why);
  if (!have_target) cli.usage_error("no TARGET given");
  return cl;
}

int fail(const std::string& target, const std::string& what) {
  std::fprintf(stderr, "stablefs-tune: %s: %s\n", target.c_str(), what.c_str());
  return kExitFailure;
}

int tune(const CommandLine& cl) {
  OpenOptions oo;
  oo.exclusive = true;  // refuses a mounted image, or one being checked
  auto dev = open_device(cl.target, oo);
  if (!dev.ok())
    return fail(cl.target, dev.error() == EBUSY     ? "in use (mounted, or being checked)"
                           : dev.error() == ENOTBLK ? "neither an image file nor a block device"
                                                    : std::strerror(dev.error()));
  BlockDevice& d = **dev;
  std::string why;
  auto copies = read_superblocks(d, &why);
  if (!copies.ok()) return fail(cl.target, why);
  Superblock sb = copies->sb;  // the copy a mount would use
  sb.label = cl.label;
  sb.sequence++;
  AlignedBlock block;
  for (uint64_t nr : {kSuperblockA, kSuperblockB}) {
    encode_superblock(block.data(), sb, nr);
    if (Status s = d.write(nr, block.data(), kBlockSize); !s.ok())
      return fail(cl.target, std::string("writing the superblock: ") + std::strerror(s.error()));
    if (Status s = d.flush(); !s.ok())
      return fail(cl.target, std::string("flushing: ") + std::strerror(s.error()));
  }
  return kExitOk;
}

}  // namespace
}  // namespace stablefs

int main(int argc, char** argv) {
  return stablefs::tune(stablefs::parse_command_line(argc, argv));
}
