// What `-o` means to the daemon, what the kernel is asked for, and how a
// FUSE setattr becomes an engine SetAttr. No mount needed.
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>

#include "fs/fuse_adapter.h"
#include "fs/options.h"
#include "fs/request.h"
#include "fs/request_caller.h"

namespace stablefs {
namespace {

struct Parsed {
  Status status;
  ParsedMountOptions opts;
  std::string why;
};

Parsed parse(std::string_view csv) {
  Parsed p;
  p.status = parse_mount_options(csv, &p.opts, &p.why);
  return p;
}

bool has(const ParsedMountOptions& o, std::string_view opt) {
  return std::find(o.fuse_options.begin(), o.fuse_options.end(), opt) != o.fuse_options.end();
}

TEST(MountOptions, NoOptionsGiveDefaultsAndDefaultPermissions) {
  Parsed p = parse("");
  ASSERT_TRUE(p.status.ok());
  EXPECT_EQ(p.opts.fs.cache_bytes, 256ull << 20);
  EXPECT_EQ(p.opts.fs.stable_pages, StablePages::kWait);
  EXPECT_FALSE(p.opts.fs.verify_writes);
  EXPECT_FALSE(p.opts.fs.writeback_cache);
  EXPECT_EQ(p.opts.fs.commit_seconds, 5u);
  EXPECT_EQ(p.opts.fs.writeback_delay_ms, 1000u);
  EXPECT_EQ(p.opts.fs.meta_cache_bytes, 128ull << 20);
  EXPECT_FALSE(p.opts.fs.read_only);
  EXPECT_EQ(p.opts.fs.entry_timeout, 60.0);
  EXPECT_EQ(p.opts.fs.attr_timeout, 60.0);
  EXPECT_EQ(p.opts.fs.negative_timeout, 60.0);
  EXPECT_EQ(p.opts.fs.journal_data_pages, 16u);
  EXPECT_EQ(p.opts.fuse_options, std::vector<std::string>{"default_permissions"});
}

// errors= takes ext4's remount-ro (the default) and continue; panic, which
// a FUSE daemon cannot honour without taking every open file down with it,
// and anything else are refused, as is a bare `errors`.
TEST(MountOptions, ErrorsIsRemountRoByDefaultAndTakesContinue) {
  EXPECT_EQ(parse("").opts.fs.errors, ErrorsBehavior::kRemountRo);
  Parsed c = parse("errors=continue");
  ASSERT_TRUE(c.status.ok()) << c.why;
  EXPECT_EQ(c.opts.fs.errors, ErrorsBehavior::kContinue);
  Parsed r = parse("errors=continue,errors=remount-ro");
  ASSERT_TRUE(r.status.ok()) << r.why;
  EXPECT_EQ(r.opts.fs.errors, ErrorsBehavior::kRemountRo);
  EXPECT_TRUE(r.opts.fuse_options == std::vector<std::string>{"default_permissions"})
      << "errors= is the daemon's, not the kernel's";
  for (const char* bad : {"errors=panic", "errors=", "errors=ro", "errors"}) {
    Parsed p = parse(bad);
    EXPECT_EQ(p.status.error(), EINVAL) << bad;
    EXPECT_NE(p.why.find("errors"), std::string::npos) << bad << ": " << p.why;
  }
}

TEST(MountOptions, JournalDataTakesAPageCount) {
  EXPECT_EQ(parse("journal_data=0").opts.fs.journal_data_pages, 0u);
  EXPECT_EQ(parse("journal_data=16").opts.fs.journal_data_pages, 16u);
  EXPECT_EQ(parse("journal_data=256").opts.fs.journal_data_pages, 256u);
  for (const char* bad : {"journal_data=257", "journal_data=", "journal_data", "journal_data=on", "journal_data=auto",
                          "journal_data=-1"}) {
    Parsed p = parse(bad);
    EXPECT_EQ(p.status.error(), EINVAL) << bad;
    EXPECT_NE(p.why.find("journal_data"), std::string::npos) << p.why;
  }
}

TEST(MountOptions, JournalDeltasIsOnOrOff) {
  EXPECT_TRUE(parse("rw").opts.fs.journal_deltas);
  EXPECT_FALSE(parse("journal_deltas=off").opts.fs.journal_deltas);
  EXPECT_TRUE(parse("journal_deltas=off,journal_deltas=on").opts.fs.journal_deltas);
  for (const char* bad : {"journal_deltas", "journal_deltas=", "journal_deltas=1", "journal_deltas=yes"}) {
    Parsed p = parse(bad);
    EXPECT_EQ(p.status.error(), EINVAL) << bad;
    EXPECT_NE(p.why.find("journal_deltas"), std::string::npos) << p.why;
  }
}

TEST(MountOptions, NbdConnsTakesOneToEightAndDefaultsToFour) {
  EXPECT_EQ(parse("").opts.nbd_connections, 4);
  EXPECT_EQ(parse("nbd_conns=1").opts.nbd_connections, 1);
  EXPECT_EQ(parse("nbd_conns=8").opts.nbd_connections, 8);
  for (const char* bad : {"nbd_conns=0", "nbd_conns=9", "nbd_conns=", "nbd_conns", "nbd_conns=x"}) {
    Parsed p = parse(bad);
    EXPECT_EQ(p.status.error(), EINVAL) << bad;
    EXPECT_NE(p.why.find("nbd_conns"), std::string::npos) << p.why;
  }
}

TEST(MountOptions, DiscardIsOffUnlessAsked) {
  EXPECT_FALSE(parse("").opts.fs.discard);
  EXPECT_TRUE(parse("discard").opts.fs.discard);
  EXPECT_FALSE(parse("discard,nodiscard").opts.fs.discard);
}

TEST(MountOptions, NorecoveryAndItsAliasNoloadAreAccepted) {
  EXPECT_FALSE(parse("ro").opts.fs.norecovery);
  EXPECT_TRUE(parse("ro,norecovery").opts.fs.norecovery);
  EXPECT_TRUE(parse("noload,ro").opts.fs.norecovery);
}

TEST(MountOptions, ParsesEveryStablefsOption) {
  Parsed p = parse(
      "cache_size=64M,stable_pages=shadow,verify_writes,writeback_cache,commit=30,"
      "writeback_delay=0,meta_cache=32M,entry_timeout=3600,attr_timeout=0.5,"
      "negative_timeout=0");
  ASSERT_TRUE(p.status.ok()) << p.why;
  EXPECT_EQ(p.opts.fs.cache_bytes, 64ull << 20);
  EXPECT_EQ(p.opts.fs.stable_pages, StablePages::kShadow);
  EXPECT_TRUE(p.opts.fs.verify_writes);
  EXPECT_TRUE(p.opts.fs.writeback_cache);
  EXPECT_EQ(p.opts.fs.commit_seconds, 30u);
  EXPECT_EQ(p.opts.fs.writeback_delay_ms, 0u);
  EXPECT_EQ(p.opts.fs.meta_cache_bytes, 32ull << 20);
  EXPECT_EQ(p.opts.fs.entry_timeout, 3600.0);
  EXPECT_EQ(p.opts.fs.attr_timeout, 0.5);
  EXPECT_EQ(p.opts.fs.negative_timeout, 0.0);
  // stablefs's own options never reach libfuse, which would reject them.
  EXPECT_EQ(p.opts.fuse_options, std::vector<std::string>{"default_permissions"});
}

TEST(MountOptions, ThreadsBoundsTheRequestThreads) {
  EXPECT_EQ(parse("").opts.request_threads, kMaxRequestThreads);
  EXPECT_EQ(parse("threads=1").opts.request_threads, 1);
  EXPECT_EQ(parse("threads=64").opts.request_threads, 64);
  for (const char* bad : {"threads", "threads=", "threads=0", "threads=65", "threads=-1",
                          "threads=two"}) {
    Parsed p = parse(bad);
    EXPECT_EQ(p.status.error(), EINVAL) << bad;
    EXPECT_NE(p.why.find("threads"), std::string::npos) << bad << " -> " << p.why;
  }
  // A daemon setting, never handed to libfuse (which would reject it).
  EXPECT_EQ(parse("threads=4").opts.fuse_options, std::vector<std::string>{"default_permissions"});
}

TEST(MountOptions, EveryStablePagesPolicyIsAccepted) {
  EXPECT_EQ(parse("stable_pages=wait").opts.fs.stable_pages, StablePages::kWait);
  EXPECT_EQ(parse("stable_pages=shadow").opts.fs.stable_pages, StablePages::kShadow);
  EXPECT_EQ(parse("stable_pages=bounce").opts.fs.stable_pages, StablePages::kBounce);
  EXPECT_EQ(parse("stable_pages=off").opts.fs.stable_pages, StablePages::kOff);
}

TEST(MountOptions, CacheSizeTakesBinarySuffixes) {
  EXPECT_EQ(parse("cache_size=1M").opts.fs.cache_bytes, 1ull << 20);
  EXPECT_EQ(parse("cache_size=2048K").opts.fs.cache_bytes, 2ull << 20);
  EXPECT_EQ(parse("cache_size=2G").opts.fs.cache_bytes, 2ull << 30);
  EXPECT_EQ(parse("cache_size=16777216").opts.fs.cache_bytes, 16ull << 20);
}

TEST(MountOptions, UnknownOptionIsAnErrorNamingIt) {
  Parsed p = parse("rw,foo");
  EXPECT_EQ(p.status.error(), EINVAL);
  EXPECT_EQ(p.why, "stablefs: unknown mount option 'foo'");
}

TEST(MountOptions, BadValuesAreErrorsNamingTheOption) {
  for (const char* bad : {"stable_pages=bogus", "stable_pages", "cache_size=abc", "cache_size=512K",
                          "cache_size=", "commit=0", "commit=abc", "commit=-1", "commit=",
                          "commit=99999999999", "max_read=lots", "writeback_delay=",
                          "writeback_delay", "writeback_delay=-5", "writeback_delay=1s",
                          "writeback_delay=3600001", "meta_cache=", "meta_cache=100K",
                          "meta_cache=lots", "entry_timeout", "entry_timeout=",
                          "entry_timeout=-1", "entry_timeout=1s", "attr_timeout=abc",
                          "attr_timeout=inf", "attr_timeout=nan", "attr_timeout=86401",
                          "negative_timeout=1e3", "negative_timeout= 5", "negative_timeout=+5",
                          "negative_timeout=0x10"}) {
    Parsed p = parse(bad);
    EXPECT_EQ(p.status.error(), EINVAL) << bad;
    std::string key = std::string(bad).substr(0, std::string(bad).find('='));
    EXPECT_NE(p.why.find(key), std::string::npos) << bad << " -> " << p.why;
    EXPECT_EQ(p.why.rfind("stablefs: ", 0), 0u) << p.why;
  }
  EXPECT_NE(parse("cache_size=512K").why.find("minimum is 1M"), std::string::npos);
}

TEST(MountOptions, TimeoutsAcceptZeroFractionsAndADay) {
  Parsed p = parse("entry_timeout=0,attr_timeout=86400,negative_timeout=2.25");
  ASSERT_TRUE(p.status.ok()) << p.why;
  EXPECT_EQ(p.opts.fs.entry_timeout, 0.0);
  EXPECT_EQ(p.opts.fs.attr_timeout, 86400.0);
  EXPECT_EQ(p.opts.fs.negative_timeout, 2.25);
  // Ours alone: libfuse's low-level session would reject them.
  EXPECT_EQ(p.opts.fuse_options, std::vector<std::string>{"default_permissions"});
}

TEST(MountOptions, FuseAndKernelOptionsPassThrough) {
  Parsed p = parse("allow_other,fsname=/dev/sdb,subtype=x,max_read=131072,nosuid,nodev,noexec");
  ASSERT_TRUE(p.status.ok()) << p.why;
  for (const char* o : {"allow_other", "fsname=/dev/sdb", "subtype=x", "max_read=131072",
                        "nosuid", "nodev", "noexec"})
    EXPECT_TRUE(has(p.opts, o)) << o;
}

TEST(MountOptions, DefaultPermissionsAppearsExactlyOnce) {
  Parsed p = parse("default_permissions,allow_other,default_permissions");
  ASSERT_TRUE(p.status.ok());
  EXPECT_EQ(std::count(p.opts.fuse_options.begin(), p.opts.fuse_options.end(),
                       "default_permissions"),
            1);
}

TEST(MountOptions, ReadOnlyFollowsTheLastOfRoAndRw) {
  Parsed ro = parse("rw,ro");
  EXPECT_TRUE(ro.opts.fs.read_only);
  EXPECT_TRUE(has(ro.opts, "ro"));
  EXPECT_FALSE(has(ro.opts, "rw"));
  Parsed rw = parse("ro,rw");
  EXPECT_FALSE(rw.opts.fs.read_only);
  EXPECT_TRUE(has(rw.opts, "rw"));
  EXPECT_FALSE(has(rw.opts, "ro"));
}

TEST(MountOptions, GenericMountOptionsAreAcceptedAndDropped) {
  Parsed p = parse(
      "defaults,auto,noauto,user,nouser,users,_netdev,nofail,relatime,strictatime,nodiratime,"
      "x-systemd.automount,x-systemd.device-timeout=10,comment=backup");
  ASSERT_TRUE(p.status.ok()) << p.why;
  EXPECT_EQ(p.opts.fuse_options, std::vector<std::string>{"default_permissions"});
}

TEST(MountOptions, WhatMountFuse3PassesParses) {
  ParsedMountOptions o;
  std::string why;
  ASSERT_TRUE(parse_mount_options("rw,noatime,_netdev,stable_pages=bounce", &o, &why).ok());
  ASSERT_TRUE(parse_mount_options("commit=1", &o, &why).ok());  // a second -o
  EXPECT_EQ(o.fs.stable_pages, StablePages::kBounce);
  EXPECT_EQ(o.fs.commit_seconds, 1u);
  EXPECT_TRUE(has(o, "rw"));
  EXPECT_TRUE(has(o, "noatime"));
}

TEST(MountOptions, LaterValueReplacesEarlierOne) {
  Parsed p = parse("fsname=a,fsname=b,commit=3,commit=7");
  EXPECT_TRUE(has(p.opts, "fsname=b"));
  EXPECT_FALSE(has(p.opts, "fsname=a"));
  EXPECT_EQ(p.opts.fs.commit_seconds, 7u);
}

TEST(MountOptions, EscapedCommaStaysInTheValueAndIsEscapedAgainForLibfuse) {
  Parsed p = parse("fsname=/img/a\\,b.img,allow_other");
  ASSERT_TRUE(p.status.ok()) << p.why;
  EXPECT_TRUE(has(p.opts, "fsname=/img/a,b.img"));
  EXPECT_EQ(join_fuse_options({"fsname=/img/a,b.img", "allow_other"}),
            "fsname=/img/a\\,b.img,allow_other");
}

TEST(MountOptions, MountIdentityNamesTheTargetUnlessGiven) {
  Parsed p = parse("");
  add_mount_identity(&p.opts, "/srv/disk.img");
  EXPECT_TRUE(has(p.opts, "fsname=/srv/disk.img"));
  EXPECT_TRUE(has(p.opts, "subtype=stablefs"));

  Parsed own = parse("fsname=mine");
  add_mount_identity(&own.opts, "/srv/disk.img");
  EXPECT_TRUE(has(own.opts, "fsname=mine"));
  EXPECT_FALSE(has(own.opts, "fsname=/srv/disk.img"));
}

TEST(ParseSize, AcceptsBytesAndBinarySuffixes) {
  EXPECT_EQ(*parse_size("4096"), 4096u);
  EXPECT_EQ(*parse_size("4K"), 4096u);
  EXPECT_EQ(*parse_size("4k"), 4096u);
  EXPECT_EQ(*parse_size("16M"), 16ull << 20);
  EXPECT_EQ(*parse_size("16MiB"), 16ull << 20);
  EXPECT_EQ(*parse_size("16MB"), 16ull << 20);
  EXPECT_EQ(*parse_size("1G"), 1ull << 30);
  EXPECT_EQ(*parse_size("2T"), 2ull << 40);
  EXPECT_EQ(*parse_size("512B"), 512u);
}

TEST(ParseSize, RejectsMalformedAndOverflowingSizes) {
  for (const char* bad : {"", "abc", "M", "12X", "-1", "1.5G", "10iB", "4KK", " 4K"})
    EXPECT_EQ(parse_size(bad).error(), EINVAL) << bad;
  EXPECT_EQ(parse_size("99999999999999T").error(), ERANGE);
  EXPECT_EQ(parse_size("99999999999999999999").error(), ERANGE);
}

// ---- What init asks of the kernel ----

// libfuse 3.14's defaults as do_init leaves them before calling init.
fuse_conn_info kernel_offering_everything() {
  fuse_conn_info c{};
  c.capable = ~0u;
  c.want = FUSE_CAP_ASYNC_READ | FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_AUTO_INVAL_DATA |
           FUSE_CAP_HANDLE_KILLPRIV | FUSE_CAP_ASYNC_DIO | FUSE_CAP_ATOMIC_O_TRUNC |
           FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO;
  c.max_write = 128 << 10;
  return c;
}

TEST(Capabilities, WritebackCacheOnlyWhenTheOptionIsSet) {
  fuse_conn_info c = kernel_offering_everything();
  negotiate_capabilities(&c, MountOptions{});
  EXPECT_FALSE(c.want & FUSE_CAP_WRITEBACK_CACHE);

  MountOptions wb;
  wb.writeback_cache = true;
  c = kernel_offering_everything();
  negotiate_capabilities(&c, wb);
  EXPECT_TRUE(c.want & FUSE_CAP_WRITEBACK_CACHE);
}

TEST(Capabilities, NeverWantsWhatTheKernelLacks) {
  fuse_conn_info c = kernel_offering_everything();
  c.capable &= ~FUSE_CAP_WRITEBACK_CACHE & ~FUSE_CAP_PARALLEL_DIROPS;
  MountOptions wb;
  wb.writeback_cache = true;
  negotiate_capabilities(&c, wb);
  EXPECT_FALSE(c.want & FUSE_CAP_WRITEBACK_CACHE);
  EXPECT_FALSE(c.want & FUSE_CAP_PARALLEL_DIROPS);
}

TEST(Capabilities, TruncateSpliceAndKillprivStayWithTheKernel) {
  fuse_conn_info c = kernel_offering_everything();
  negotiate_capabilities(&c, MountOptions{});
  for (unsigned cap : {FUSE_CAP_ATOMIC_O_TRUNC, FUSE_CAP_SPLICE_READ, FUSE_CAP_SPLICE_WRITE,
                       FUSE_CAP_SPLICE_MOVE, FUSE_CAP_HANDLE_KILLPRIV, FUSE_CAP_AUTO_INVAL_DATA})
    EXPECT_FALSE(c.want & cap) << std::hex << cap;
  for (unsigned cap : {FUSE_CAP_ASYNC_READ, FUSE_CAP_PARALLEL_DIROPS, FUSE_CAP_READDIRPLUS})
    EXPECT_TRUE(c.want & cap) << std::hex << cap;
}

// ACLs (stored and kept in step with the mode by the engine, with the
// umask applied there: DONT_MASK) and file handles (export support).
TEST(Capabilities, AclsAndExportSupportAreClaimed) {
  fuse_conn_info c = kernel_offering_everything();
  negotiate_capabilities(&c, MountOptions{});
  for (unsigned cap : {FUSE_CAP_POSIX_ACL, FUSE_CAP_DONT_MASK, FUSE_CAP_EXPORT_SUPPORT})
    EXPECT_TRUE(c.want & cap) << std::hex << cap;
}

TEST(Capabilities, AsksForOneMebibyteWrites) {
  fuse_conn_info c = kernel_offering_everything();
  negotiate_capabilities(&c, MountOptions{});
  EXPECT_EQ(c.max_write, 1u << 20);
}

// ---- attribute timeouts ----

// MountContext needs a Filesystem; the timeout policy never calls it.
class UnusedFilesystem : public Filesystem {
 public:
  Status unmount() override { return err(ENOSYS); }
  void forget(uint64_t, uint64_t) override {}
  Result<Attr> lookup(uint64_t, std::string_view) override { return err(ENOSYS); }
  Result<Attr> mknod(uint64_t, std::string_view, uint32_t, uint64_t, const Creds&) override {
    return err(ENOSYS);
  }
  Result<Attr> mkdir(uint64_t, std::string_view, uint32_t, const Creds&) override {
    return err(ENOSYS);
  }
  Result<Attr> symlink(uint64_t, std::string_view, std::string_view, const Creds&) override {
    return err(ENOSYS);
  }
  Result<std::string> readlink(uint64_t) override { return err(ENOSYS); }
  Result<Attr> link(uint64_t, uint64_t, std::string_view) override { return err(ENOSYS); }
  Status unlink(uint64_t, std::string_view) override { return err(ENOSYS); }
  Status rmdir(uint64_t, std::string_view) override { return err(ENOSYS); }
  Status rename(uint64_t, std::string_view, uint64_t, std::string_view, unsigned,
                const Creds&) override {
    return err(ENOSYS);
  }
  Result<Attr> getattr(uint64_t) override { return err(ENOSYS); }
  Result<Attr> setattr(uint64_t, const SetAttr&) override { return err(ENOSYS); }
  Result<FsStat> statfs() override { return err(ENOSYS); }
  Status open(uint64_t, int) override { return err(ENOSYS); }
  Result<size_t> read(uint64_t, uint64_t, size_t, char*) override { return err(ENOSYS); }
  Result<size_t> write(uint64_t, uint64_t, const char*, size_t) override { return err(ENOSYS); }
  Result<bool> kill_privileges(uint64_t, PrivilegeCaller&) override { return err(ENOSYS); }
  uint64_t sample_write_errors(uint64_t) override { return 0; }
  Status flush(uint64_t, uint64_t*) override { return err(ENOSYS); }
  Status fsync(uint64_t, bool, uint64_t*) override { return err(ENOSYS); }
  Status fallocate(uint64_t, int, uint64_t, uint64_t) override { return err(ENOSYS); }
  Result<uint64_t> seek_data_hole(uint64_t, uint64_t, int) override { return err(ENOSYS); }
  Result<size_t> copy_file_range(uint64_t, uint64_t, uint64_t, uint64_t, size_t) override {
    return err(ENOSYS);
  }
  Status opendir(uint64_t) override { return err(ENOSYS); }
  Status readdir(uint64_t, uint64_t, const std::function<bool(const DirListEntry&)>&) override {
    return err(ENOSYS);
  }
  Status fsyncdir(uint64_t, bool) override { return err(ENOSYS); }
  Status setxattr(uint64_t, std::string_view, std::string_view, int) override {
    return err(ENOSYS);
  }
  Result<std::string> getxattr(uint64_t, std::string_view) override { return err(ENOSYS); }
  Result<std::string> listxattr(uint64_t) override { return err(ENOSYS); }
  Status removexattr(uint64_t, std::string_view) override { return err(ENOSYS); }
};

Attr attr_of(uint64_t ino, uint32_t type) {
  Attr a;
  a.ino = ino;
  a.mode = type | 0644;
  return a;
}

// ---- open file descriptions ----

// A RELEASE still queued in the kernel when the session ends never
// arrives: the descriptions it would have freed go with the mount. They
// used to leak, which LeakSanitizer reported for a daemon that closed a
// file just before unmount (scripts/sanitize.sh, BadInput tests); this
// test is meaningful under ASan, where a leak fails it.
TEST(OpenFiles, DescriptionsNeverReleasedGoWithTheMount) {
  UnusedFilesystem fs;
  auto m = std::make_unique<MountContext>(fs, MountOptions{});
  auto released = std::make_unique<OpenFile>();
  OpenFile* r = released.get();
  m->adopt_open_file(std::move(released));
  m->adopt_open_file(std::make_unique<OpenFile>());  // its RELEASE never comes
  m->release_open_file(r);
  m->release_open_file(nullptr);  // unknown: ignored
  m.reset();
}

TEST(AttrTimeout, UnwrittenFilesAndDirectoriesGetTheFullTimeout) {
  UnusedFilesystem fs;
  MountContext m(fs, MountOptions{});
  EXPECT_EQ(m.attr_timeout(attr_of(2, S_IFREG)), 60.0);
  EXPECT_EQ(m.attr_timeout(attr_of(3, S_IFDIR)), 60.0);
  EXPECT_EQ(m.entry_timeout(), 60.0);
  EXPECT_EQ(m.negative_timeout(), 60.0);
}

// Its blocks are allocated at writeback, after the reply the kernel saw.
TEST(AttrTimeout, AFileWithUnwrittenDataGetsTheShortTimeout) {
  UnusedFilesystem fs;
  MountContext m(fs, MountOptions{});
  m.note_data_written(2);
  EXPECT_EQ(m.attr_timeout(attr_of(2, S_IFREG)), MountContext::kRecentWriteTimeout);
  EXPECT_EQ(m.attr_timeout(attr_of(5, S_IFREG)), 60.0) << "another file keeps the long one";
}

TEST(AttrTimeout, AShorterConfiguredTimeoutIsNeverLengthened) {
  UnusedFilesystem fs;
  MountOptions o;
  o.attr_timeout = 0;
  MountContext m(fs, o);
  m.note_data_written(2);
  EXPECT_EQ(m.attr_timeout(attr_of(2, S_IFREG)), 0.0);
  EXPECT_EQ(m.attr_timeout(attr_of(3, S_IFDIR)), 0.0);
}

TEST(AttrTimeout, WritebackCacheKeepsRegularFilesShort) {
  UnusedFilesystem fs;
  MountOptions o;
  o.writeback_cache = true;
  MountContext m(fs, o);
  EXPECT_EQ(m.attr_timeout(attr_of(2, S_IFREG)), MountContext::kRecentWriteTimeout);
  EXPECT_EQ(m.attr_timeout(attr_of(3, S_IFDIR)), 60.0);
}

// ---- setattr translation ----

TEST(SetattrTranslation, NowFlagsResolveToTheGivenClock) {
  struct stat st {};
  st.st_atim = {100, 5};
  st.st_mtim = {200, 6};
  Timespec now{1234, 567};
  SetAttr sa = translate_setattr(
      st, FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW,
      now);
  ASSERT_TRUE(sa.atime && sa.mtime);
  EXPECT_EQ(sa.atime->sec, 1234);
  EXPECT_EQ(sa.atime->nsec, 567u);
  EXPECT_EQ(sa.mtime->sec, 1234);
  EXPECT_FALSE(sa.ctime);
  EXPECT_FALSE(sa.explicit_times) << "now is not an explicit time (append-only allows it)";
}

TEST(SetattrTranslation, ExplicitTimesKeepNanoseconds) {
  struct stat st {};
  st.st_atim = {100, 5};
  st.st_mtim = {200, 999999999};
  SetAttr sa = translate_setattr(st, FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME, Timespec{9, 9});
  EXPECT_EQ(sa.atime->sec, 100);
  EXPECT_EQ(sa.atime->nsec, 5u);
  EXPECT_EQ(sa.mtime->sec, 200);
  EXPECT_EQ(sa.mtime->nsec, 999999999u);
  EXPECT_TRUE(sa.explicit_times);
}

TEST(SetattrTranslation, OnlyTheFieldsTheKernelNamesAreSet) {
  struct stat st {};
  st.st_size = 4096;
  st.st_mode = S_IFREG | 0640;
  st.st_uid = 7;
  SetAttr sa = translate_setattr(st, FUSE_SET_ATTR_SIZE, Timespec{});
  EXPECT_EQ(sa.size, 4096u);
  EXPECT_FALSE(sa.mode || sa.uid || sa.gid || sa.atime || sa.mtime || sa.ctime);

  sa = translate_setattr(st, FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID, Timespec{});
  EXPECT_EQ(sa.mode, uint32_t(S_IFREG | 0640));
  EXPECT_EQ(sa.uid, 7u);
  EXPECT_FALSE(sa.size || sa.gid);
}

TEST(SetattrTranslation, CtimeOnlyWhenTheKernelSendsIt) {
  struct stat st {};
  st.st_ctim = {300, 1};
  SetAttr sa = translate_setattr(st, FUSE_SET_ATTR_CTIME, Timespec{});
  ASSERT_TRUE(sa.ctime);
  EXPECT_EQ(sa.ctime->sec, 300);
}

// What RequestCaller needs of /proc/<pid>/status: the effective
// capabilities (hex) and the supplementary groups.
TEST(ProcStatus, ReadsEffectiveCapabilitiesAndGroups) {
  const std::string text =
      "Name:\txfs_io\nUid:\t1001\t1001\t1001\t1001\nGid:\t1001\t1001\t1001\t1001\n"
      "Groups:\t27 1001 65534 \nCapInh:\t0000000000000000\nCapEff:\t00000000a80425fb\n";
  ProcStatus st = parse_proc_status(text);
  EXPECT_EQ(st.effective_caps, 0xa80425fbull);
  EXPECT_EQ(st.groups, (std::vector<uint32_t>{27, 1001, 65534}));
}

TEST(ProcStatus, MissingOrGarbledFieldsMeanNoCapabilityAndNoGroup) {
  ProcStatus st = parse_proc_status("Groups:\t\nCapEff:\tzz\n");
  EXPECT_EQ(st.effective_caps, 0u);
  EXPECT_TRUE(st.groups.empty());
  EXPECT_EQ(parse_proc_status("").effective_caps, 0u);
}

// Once idmapped mounts are allowed, most requests carry no ids: the
// caller's fsuid and fsgid (the fourth of real, effective, saved, fs) come
// from /proc, never its real or effective ids.
TEST(ProcStatus, ReadsTheFsIdsFromTheFourthField) {
  ProcStatus st = parse_proc_status(
      "Name:\tsetfsuid\nUid:\t0\t0\t0\t1001\nGid:\t0\t27\t0\t1002\nGroups:\t\n");
  EXPECT_EQ(st.fsuid, std::optional<uint32_t>(1001));
  EXPECT_EQ(st.fsgid, std::optional<uint32_t>(1002));
}

TEST(ProcStatus, ShortOrGarbledIdLinesGiveNoId) {
  ProcStatus st = parse_proc_status("Uid:\t0\t0\t0\nGid:\tx\ty\tz\tw\n");
  EXPECT_FALSE(st.fsuid.has_value());
  EXPECT_FALSE(st.fsgid.has_value());
  EXPECT_FALSE(parse_proc_status("Uid:\t1\t1\t1\t4294967296\n").fsuid.has_value());
}

}  // namespace
}  // namespace stablefs
