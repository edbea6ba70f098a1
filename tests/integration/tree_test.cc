// A generated tree (tests/integration/seeded_tree.h: every size around a
// page boundary, sparse files, 255-byte names, short and long symlinks,
// hard links, fifos, xattrs, odd modes and owners, 2,400 small files, a
// fixed mtime on everything) is copied in with cp -a, survives a remount
// exactly as its manifest says, and the image scrubs clean afterwards.
// The manifest is made when the tree is generated, so nothing outside the
// test (a package install, say) can change what the copy is compared with.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>

#include "tests/integration/mount_fixture.h"
#include "tests/integration/process.h"
#include "tests/integration/seeded_tree.h"

namespace stablefs::integ {
namespace {

constexpr uint64_t kSeed = 0x5eed7ee5;

class CopyTree : public RealMount {};

TEST_F(CopyTree, GeneratedTreeCopiedInMatchesItsManifestAfterRemountAndScrubsClean) {
  const std::string src = dir() + "/src";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  TreeManifest manifest;
  std::string made = make_seeded_tree(src, kSeed, &manifest);
  ASSERT_EQ(made, "") << "generating the tree under " << src;
  ASSERT_GT(manifest.size(), 2500u);
  // The generator and the comparison agree on the source (ext4 or tmpfs):
  // a difference here is the harness's, not stablefs's.
  ASSERT_EQ(compare_with_manifest(src, manifest), "") << "the source tree";

  ASSERT_EQ(::mkdir(path("tree").c_str(), 0755), 0);
  CommandResult cp = run_command({"cp", "-a", src + "/.", path("tree")}, std::chrono::seconds(240));
  ASSERT_TRUE(cp.ok()) << "cp -a: " << cp.describe() << "\n"
                       << cp.output.substr(0, 4000) << "\n--- daemon log ---\n"
                       << daemon_log();
  EXPECT_EQ(compare_with_manifest(path("tree"), manifest), "") << "the copy, before remount";

  ASSERT_NO_FATAL_FAILURE(remount());
  EXPECT_EQ(compare_with_manifest(path("tree"), manifest), "") << "the copy, after remount";

  ASSERT_NO_FATAL_FAILURE(unmount_only());
  CommandResult fsck = run_fsck({"--scrub"});
  EXPECT_TRUE(fsck.ok()) << "fsck.stablefs --scrub: " << fsck.describe() << "\n"
                         << fsck.output.substr(0, 4000);
}

}  // namespace
}  // namespace stablefs::integ
