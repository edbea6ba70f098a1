// stablefs-dump: shows an unmounted stablefs image's structures, as
// dumpe2fs and debugfs do for ext4: superblocks, geometry and journal
// state; an inode; a directory's entries; a file's extents with each
// block's recorded and actual checksum. Read-only: the journal is replayed
// in memory, never onto the image.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tools/dump/describe.h"
#include "tools/dump/image_reader.h"
#include "tools/tool_cli.h"
#include "tools/version.h"

namespace stablefs {
namespace {

void print_usage(FILE* out) {
  std::fprintf(out,
      "usage: stablefs-dump [--json] TARGET\n"
      "       stablefs-dump [--json] --inode INODE TARGET\n"
      "       stablefs-dump [--json] --dir INODE TARGET\n"
      "       stablefs-dump [--json] --extents INODE TARGET\n"
      "\n"
      "Shows the structures of the stablefs in TARGET (an image file or a block\n"
      "device) without mounting it. It writes nothing: the journal is replayed in\n"
      "memory, so what it shows is what a mount would see. INODE is a number or an\n"
      "absolute path inside the filesystem (/ is inode 1).\n"
      "\n"
      "  (no option)      superblocks, geometry and journal state\n"
      "  --inode INODE    one inode's fields\n"
      "  --dir INODE      a directory's entries\n"
      "  --extents INODE  a file's extent map, and each block's recorded checksum\n"
      "                   beside the checksum of what the block holds\n"
      "  --json           one JSON object instead of text\n"
      "  -h, --help       this text\n"
      "  -V, --version    version of stablefs-dump and of its libraries\n"
      "\n"
      "Exit status: 0 shown; 1 TARGET or the structure asked for cannot be read (not\n"
      "stablefs, corrupt, no such inode or path); 2 usage error.\n");
}

const ToolCli cli("stablefs-dump", print_usage,
                  {uring_version(), xxhash_version()});

enum class View { kFilesystem, kInode, kDirectory, kExtents };

struct CommandLine {
  std::string target;
  View view = View::kFilesystem;
  std::string inode;  // a number or an absolute path
  bool json = false;
};

CommandLine parse_command_line(int argc, char** argv) {
  CommandLine cl;
  bool have_target = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    View v = a == "--inode" ? View::kInode
             : a == "--dir" ? View::kDirectory
             : a == "--extents" ? View::kExtents
                                : View::kFilesystem;
    if (ToolCli::is_help_or_version(a)) {
      cli.answer(a);
    } else if (a == "--json") {
      cl.json = true;
    } else if (v != View::kFilesystem) {
      if (cl.view != View::kFilesystem) cli.usage_error("one of --inode, --dir, --extents, please");
      if (i + 1 >= argc) cli.usage_error(a + " needs an inode number or a path");
      cl.view = v;
      cl.inode = argv[++i];
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

// A number, or a path resolved inside the image.
Result<uint64_t> inode_number(ImageReader& r, const std::string& s, std::string* why) {
  if (!s.empty() && s[0] == '/') return r.resolve(s, why);
  char* end = nullptr;
  errno = 0;
  unsigned long long n = std::strtoull(s.c_str(), &end, 10);
  if (s.empty() || *end || errno || s[0] == '-') {
    *why = "'" + s + "' is neither an inode number nor an absolute path";
    return err(EINVAL);
  }
  return uint64_t(n);
}

int dump(const CommandLine& cl) {
  std::string why;
  auto reader = ImageReader::open(cl.target, &why);
  if (!reader.ok()) {
    std::fprintf(stderr, "stablefs-dump: %s\n", why.c_str());
    return kExitFailure;
  }
  ImageReader& r = **reader;
  Result<Record> rec = describe_filesystem(r);
  if (cl.view != View::kFilesystem) {
    auto ino = inode_number(r, cl.inode, &why);
    if (!ino.ok()) {
      std::fprintf(stderr, "stablefs-dump: %s: %s\n", cl.target.c_str(), why.c_str());
      return kExitFailure;
    }
    rec = cl.view == View::kInode       ? describe_inode(r, *ino, &why)
          : cl.view == View::kDirectory ? describe_directory(r, *ino, &why)
                                        : describe_extents(r, *ino, &why);
  }
  if (!rec.ok()) {
    std::fprintf(stderr, "stablefs-dump: %s: %s\n", cl.target.c_str(), why.c_str());
    return kExitFailure;
  }
  if (cl.json) rec->print_json(stdout);
  else rec->print_text(stdout);
  if (r.mounted() && cl.view != View::kFilesystem)
    std::fprintf(stderr, "stablefs-dump: %s is mounted: the image may be behind the daemon's "
                         "memory\n", cl.target.c_str());
  return kExitOk;
}

}  // namespace
}  // namespace stablefs

int main(int argc, char** argv) { return stablefs::dump(stablefs::parse_command_line(argc, argv)); }
