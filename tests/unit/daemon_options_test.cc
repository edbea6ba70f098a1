// What a second mount of a served image compares with the daemon it would
// share (fs/daemon_options.h). No mount needed.
#include <gtest/gtest.h>

#include "fs/daemon_options.h"

namespace stablefs {
namespace {

ParsedMountOptions parsed(const std::vector<std::string>& option_strings) {
  ParsedMountOptions p;
  std::string why;
  for (const std::string& s : option_strings) {
    EXPECT_TRUE(parse_mount_options(s, &p, &why).ok()) << why;
  }
  if (option_strings.empty()) {
    EXPECT_TRUE(parse_mount_options("", &p, &why).ok());
  }
  return p;
}

// The conflicts of a second mount given `second` with a daemon started with
// `first`, the daemon's options going through their encoded form as they
// do through the ioctl.
std::vector<std::string> conflicts(const std::vector<std::string>& first,
                                   const std::vector<std::string>& second) {
  DaemonOptions running =
      decode_daemon_options(encode_daemon_options(daemon_options_of(parsed(first))));
  return daemon_option_conflicts(second, parsed(second), running);
}

TEST(DaemonOptions, EncodingRoundTrips) {
  DaemonOptions d = daemon_options_of(parsed({"cache_size=64M,stable_pages=shadow,allow_other"}));
  EXPECT_EQ(decode_daemon_options(encode_daemon_options(d)), d);
  EXPECT_EQ(d.at("cache_size"), "67108864");
  EXPECT_EQ(d.at("stable_pages"), "shadow");
  EXPECT_EQ(d.at("allow_other"), "on");
  EXPECT_EQ(d.at("read_only"), "off");
}

TEST(DaemonOptions, OptionsLeftOutNeverConflict) {
  EXPECT_TRUE(conflicts({"cache_size=64M,verify_writes,threads=1"}, {}).empty());
}

TEST(DaemonOptions, ANamedOptionThatDiffersConflicts) {
  auto c = conflicts({"cache_size=64M"}, {"cache_size=128M"});
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0], "cache_size=134217728 (the daemon runs with cache_size=67108864)");
  // The default value named outright differs from a daemon that runs
  // without it.
  c = conflicts({"stable_pages=off"}, {"stable_pages=wait"});
  ASSERT_EQ(c.size(), 1u);
  EXPECT_NE(c[0].find("stable_pages=off"), std::string::npos) << c[0];
}

TEST(DaemonOptions, TheDaemonsOwnValueDoesNotConflict) {
  EXPECT_TRUE(conflicts({"cache_size=64M,verify_writes"}, {"cache_size=65536K", "verify_writes"})
                  .empty());
  EXPECT_TRUE(conflicts({}, {"stable_pages=wait"}).empty());
}

TEST(DaemonOptions, PerMountFlagsAndTheIdentityNeverConflict) {
  EXPECT_TRUE(conflicts({}, {"ro,nosuid,suid,nodev,noexec,exec,fsname=other,subtype=x"}).empty());
}

TEST(DaemonOptions, AliasesNameTheirOption) {
  EXPECT_EQ(conflicts({"discard"}, {"nodiscard"}).size(), 1u);
  EXPECT_EQ(conflicts({"ro"}, {"ro,noload"}).size(), 1u);
  EXPECT_EQ(conflicts({"sync"}, {"async"}).size(), 1u);
  EXPECT_EQ(conflicts({}, {"noatime"}).size(), 1u);
  EXPECT_TRUE(conflicts({"noatime"}, {"noatime"}).empty());
}

TEST(DaemonOptions, AKeyTheDaemonDoesNotReportConflicts) {
  DaemonOptions older = daemon_options_of(parsed({}));
  older.erase("journal_deltas");
  auto c = daemon_option_conflicts({"journal_deltas=on"}, parsed({"journal_deltas=on"}), older);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_NE(c[0].find("does not say"), std::string::npos) << c[0];
}

}  // namespace
}  // namespace stablefs
