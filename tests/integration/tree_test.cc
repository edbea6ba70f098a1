// A real tree copied in: /usr/include (tens of thousands of files, nested
// directories, symlinks, hard links) survives a remount byte for byte and
// attribute for attribute, and the image scrubs clean afterwards.
#include <gtest/gtest.h>

#include <string>

#include "tests/integration/mount_fixture.h"
#include "tests/integration/process.h"

namespace stablefs::integ {
namespace {

class CopyTree : public MountedFs {};

constexpr char kSource[] = "/usr/include";

// Sorted listing of everything find(1) can see that a copy must preserve
// (directory sizes are filesystem-specific and left out).
CommandResult attribute_listing(const std::string& root) {
  const std::string script = "cd '" + root +
                             "' && { "
                             "find . ! -type d -printf '%p|%y|%m|%U|%G|%n|%s|%T@|%l\\n'; "
                             "find . -type d -printf '%p|%y|%m|%U|%G|%n|%T@\\n'; } | LC_ALL=C sort";
  return run_command({"/bin/sh", "-c", script}, std::chrono::seconds(120));
}

TEST_F(CopyTree, UsrIncludeCopiedInIsIdenticalAfterRemountAndScrubsClean) {
  CommandResult cp = run_command({"cp", "-a", kSource, mnt() + "/"}, std::chrono::seconds(240));
  ASSERT_TRUE(cp.ok()) << "cp -a: " << cp.describe() << "\n"
                       << cp.output.substr(0, 4000) << "\n--- daemon log ---\n"
                       << daemon_log();
  ASSERT_NO_FATAL_FAILURE(remount());

  CommandResult diff = run_command({"diff", "-r", "--no-dereference", kSource, path("include")},
                                   std::chrono::seconds(180));
  EXPECT_TRUE(diff.ok()) << "diff -r: " << diff.describe() << "\n" << diff.output.substr(0, 4000);
  EXPECT_EQ(diff.output, "");

  CommandResult want = attribute_listing(kSource);
  CommandResult got = attribute_listing(path("include"));
  ASSERT_TRUE(want.ok()) << want.output.substr(0, 2000);
  ASSERT_TRUE(got.ok()) << got.output.substr(0, 2000);
  EXPECT_GT(want.output.size(), 100000u) << "the source tree is not what this test expects";
  if (want.output != got.output) {
    // Show the first differing line rather than two megabytes.
    size_t at = 0;
    while (at < want.output.size() && at < got.output.size() && want.output[at] == got.output[at])
      ++at;
    size_t line = want.output.rfind('\n', at);
    line = line == std::string::npos ? 0 : line + 1;
    ADD_FAILURE() << "attributes differ; first difference:\n  source: "
                  << want.output.substr(line, want.output.find('\n', line) - line)
                  << "\n  copy:   " << got.output.substr(line, got.output.find('\n', line) - line);
  }

  ASSERT_NO_FATAL_FAILURE(unmount_only());
  CommandResult fsck = run_fsck({"--scrub"});
  EXPECT_TRUE(fsck.ok()) << "fsck.stablefs --scrub: " << fsck.describe() << "\n"
                         << fsck.output.substr(0, 4000);
}

}  // namespace
}  // namespace stablefs::integ
