// stablefs: the FUSE daemon. `stablefs TARGET MOUNTPOINT [-o OPTS] [-f] [-d] [-s]`.
//
// The argv is the one mount.fuse3 builds, so `mount -t fuse.stablefs IMG
// DIR` and fstab lines work once this binary is on root's PATH (mount.fuse3
// runs `stablefs IMG DIR -o rw,...`).
//
// Everything that can fail is checked while the terminal still sees our
// stderr and the caller still waits for our exit status: the background
// process is forked *before* the engine starts (it runs threads, which a
// later fork would lose) and the parent exits only when the child reports
// how the mount went, with the child's exit code.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sys/mount.h>

#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "core/base/log.h"
#include "core/filesystem.h"
#include "core/stats/live_counters.h"
#include "core/io/open_device.h"
#include "fs/fuse_adapter.h"
#include "fs/daemon_options.h"
#include "fs/kernel_channel.h"
#include "fs/options.h"
#include "tools/mountinfo.h"
#include "tools/share_mount.h"
#include "tools/tool_cli.h"
#include "tools/version.h"

namespace stablefs {
namespace {

void print_usage(FILE* out) {
  std::fprintf(out,
      "usage: stablefs TARGET MOUNTPOINT [-o OPTIONS] [-f] [-d] [-s]\n"
      "\n"
      "Mounts the stablefs filesystem in TARGET (an image file, a block device or an\n"
      "NBD URI: nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH)\n"
      "on MOUNTPOINT. Unmount with `fusermount3 -u MOUNTPOINT` (or umount as root).\n"
      "If a stablefs daemon already serves TARGET, MOUNTPOINT becomes a second mount\n"
      "of its mount (no new daemon; see stablefs(8)).\n"
      "\n"
      "  -o OPTIONS    comma-separated mount options (may be repeated)\n"
      "  -f            stay in the foreground\n"
      "  -d            debug: foreground, and log every FUSE request\n"
      "  -s            single-threaded request loop\n"
      "  -h, --help    this text\n"
      "  -V, --version version information\n"
      "\n"
      "stablefs options:\n"
      "  cache_size=SIZE                 page cache size (K/M/G suffixes; >= 1M; default 256M)\n"
      "  meta_cache=SIZE                 metadata blocks kept in memory (>= 1M; default 128M)\n"
      "  stable_pages=wait|shadow|bounce|off\n"
      "                                  how pages under writeback stay stable (default wait)\n"
      "  verify_writes                   read every data block back and verify its checksum\n"
      "  nbd_conns=N                     connections to an NBD server with multi-conn (1-8, 4)\n"
      "  threads=N                       most request threads (1-64, default 64; 1 suits many\n"
      "                                  writers of one file)\n"
      "  discard                         release freed blocks in the backing store (NBD trim,\n"
      "                                  punched holes) once their free is committed\n"
      "  journal_data=PAGES              write runs of up to PAGES rewritten pages through\n"
      "                                  the journal (default 16; 0 = never)\n"
      "  journal_deltas=on|off           log metadata blocks as the bytes that changed\n"
      "                                  since their last logged version (default on)\n"
      "  writeback_cache                 let the kernel cache writes (FUSE writeback cache)\n"
      "  commit=SECONDS                  journal commit interval (default 5)\n"
      "  writeback_delay=MS              start background writeback of dirty pages after\n"
      "                                  MS milliseconds; 0 = write-behind (default 1000)\n"
      "  entry_timeout=SEC               how long the kernel caches names (default 60)\n"
      "  attr_timeout=SEC                how long the kernel caches attributes (default 60;\n"
      "                                  1 for files written in the last few seconds)\n"
      "  negative_timeout=SEC            how long the kernel caches \"no such name\"\n"
      "                                  (default 60; 0 = never)\n"
      "  ro, rw                          read-only / read-write (default rw)\n"
      "FUSE options passed to the kernel: allow_other, allow_root, auto_unmount,\n"
      "  default_permissions (always on), fsname=, subtype=, max_read=, debug, and the\n"
      "  mount flags [no]suid, [no]dev, [no]exec, [no]atime, async, sync, dirsync.\n"
      "Accepted and ignored (from fstab / mount(8)): defaults, [no]auto, [no]user, users,\n"
      "  owner, group, _netdev, nofail, relatime, strictatime, nodiratime, lazytime,\n"
      "  x-*, comment=.\n"
      "\n"
      "Exit status: 0 after a clean unmount; 1 if the mount or the final write-back\n"
      "failed; 2 for a usage error.\n");
}

const ToolCli cli("stablefs", print_usage,
                  {{"libfuse", fuse_pkgversion()}, uring_version(), xxhash_version(), boost_version()});

struct CommandLine {
  std::string target;
  std::string mountpoint;
  std::vector<std::string> option_strings;  // one per -o
  bool foreground = false;
  bool debug = false;
  bool single_threaded = false;
};

CommandLine parse_command_line(int argc, char** argv) {
  CommandLine cl;
  std::vector<std::string> positional;
  bool options_done = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (options_done || a.empty() || a[0] != '-') {
      positional.push_back(a);
    } else if (a == "--") {
      options_done = true;
    } else if (ToolCli::is_help_or_version(a)) {
      cli.answer(a);
    } else if (a == "-o") {
      if (i + 1 >= argc) cli.usage_error("-o needs an argument");
      cl.option_strings.push_back(argv[++i]);
    } else if (a.rfind("-o", 0) == 0) {
      cl.option_strings.push_back(a.substr(2));
    } else if (a == "-f") {
      cl.foreground = true;
    } else if (a == "-d") {
      cl.debug = cl.foreground = true;
    } else if (a == "-s") {
      cl.single_threaded = true;
    } else {
      cli.usage_error("unknown option '" + a + "'");
    }
  }
  if (positional.size() != 2) cli.usage_error("expected TARGET and MOUNTPOINT");
  cl.target = positional[0];
  cl.mountpoint = positional[1];
  return cl;
}

std::optional<std::string> real_path(const std::string& p) {
  char buf[PATH_MAX];
  if (!::realpath(p.c_str(), buf)) return std::nullopt;
  return std::string(buf);
}

bool is_mount_point(const std::string& abs_path) {
  auto mounts = read_mountinfo();
  return std::any_of(mounts.begin(), mounts.end(),
                     [&](const MountInfoEntry& e) { return e.mount_point == abs_path; });
}

// Checks that need no engine, done before forking so the caller sees them.
// Returns the absolute paths (TARGET, MOUNTPOINT) or exits.
std::pair<std::string, std::string> validate_paths(const CommandLine& cl) {
  struct stat st {};
  // An NBD URI names no local file: it is checked by connecting, and kept
  // as given (it becomes the mount's source).
  const bool nbd = is_nbd_uri(cl.target);
  if (!nbd && ::stat(cl.target.c_str(), &st) != 0) {
    std::fprintf(stderr, "stablefs: cannot open %s: %s\n", cl.target.c_str(),
                 std::strerror(errno));
    std::exit(kExitFailure);
  }
  if (::stat(cl.mountpoint.c_str(), &st) != 0) {
    std::fprintf(stderr, "stablefs: mount point %s: %s\n", cl.mountpoint.c_str(),
                 std::strerror(errno));
    std::exit(kExitFailure);
  }
  if (!S_ISDIR(st.st_mode)) {
    std::fprintf(stderr, "stablefs: mount point %s is not a directory\n", cl.mountpoint.c_str());
    std::exit(kExitFailure);
  }
  auto target = nbd ? std::optional<std::string>(cl.target) : real_path(cl.target);
  auto mountpoint = real_path(cl.mountpoint);
  if (!target || !mountpoint) {
    std::fprintf(stderr, "stablefs: cannot resolve %s: %s\n",
                 (!target ? cl.target : cl.mountpoint).c_str(), std::strerror(errno));
    std::exit(kExitFailure);
  }
  if (is_mount_point(*mountpoint)) {
    std::fprintf(stderr, "stablefs: %s is already a mount point (unmount it first)\n",
                 mountpoint->c_str());
    std::exit(kExitFailure);
  }
  return {*target, *mountpoint};
}

// The background split: the parent waits on a pipe for the child's exit
// code for the mount, so `stablefs img dir && ls dir` sees the mount and a
// failure reaches the caller's shell.
class Background {
 public:
  // Forks. Returns in the child (and in the foreground, where it does
  // nothing); the parent exits with the child's reported code.
  void detach() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      std::perror("stablefs: pipe");
      std::exit(kExitFailure);
    }
    pid_t pid = ::fork();
    if (pid < 0) {
      std::perror("stablefs: fork");
      std::exit(kExitFailure);
    }
    if (pid > 0) {
      ::close(fds[1]);
      unsigned char code = kExitFailure;  // the child died without a word
      while (::read(fds[0], &code, 1) < 0 && errno == EINTR) {
      }
      std::_Exit(code);
    }
    ::close(fds[0]);
    report_fd_ = fds[1];
    ::setsid();
  }

  // Tells the parent the mount's outcome. On success the daemon lets go
  // of the terminal: stdin/stdout go to /dev/null, and so does stderr if
  // it is a terminal (a redirected stderr keeps receiving the log).
  void report(int code) {
    if (report_fd_ < 0) return;
    if (code == kExitOk) release_terminal();
    unsigned char c = static_cast<unsigned char>(code);
    while (::write(report_fd_, &c, 1) < 0 && errno == EINTR) {
    }
    ::close(report_fd_);
    report_fd_ = -1;
  }

 private:
  static void release_terminal() {
    int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd < 0) return;
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(null_fd, STDOUT_FILENO);
    if (::isatty(STDERR_FILENO)) {
      ::dup2(null_fd, STDERR_FILENO);
      log_to_syslog(true);  // integrity errors must still be seen somewhere
    }
    if (null_fd > STDERR_FILENO) ::close(null_fd);
  }

  int report_fd_ = -1;
};

// RAII over the libfuse C objects, destroyed in reverse order of creation.
struct FuseArgs {
  fuse_args args = FUSE_ARGS_INIT(0, nullptr);
  ~FuseArgs() { fuse_opt_free_args(&args); }
  bool add(const std::string& a) { return fuse_opt_add_arg(&args, a.c_str()) == 0; }
};
struct SessionDeleter {
  void operator()(fuse_session* se) const { fuse_session_destroy(se); }
};
using SessionPtr = std::unique_ptr<fuse_session, SessionDeleter>;
struct SignalHandlers {
  fuse_session* se;
  ~SignalHandlers() { fuse_remove_signal_handlers(se); }
};
struct KernelMount {
  fuse_session* se;
  ~KernelMount() { fuse_session_unmount(se); }
};
struct LoopConfigDeleter {
  void operator()(fuse_loop_config* c) const { fuse_loop_cfg_destroy(c); }
};

int run_loop(fuse_session* se, bool single_threaded, int threads) {
  if (single_threaded) return fuse_session_loop(se);
  std::unique_ptr<fuse_loop_config, LoopConfigDeleter> cfg(fuse_loop_cfg_create());
  // Idle threads are kept (-1 is libfuse's default and its advice): a
  // thread blocked in fsync is common, and recreating threads costs more
  // than their stacks. Up to `threads` requests in flight (threads=, 64 by
  // default), so concurrent fsyncs can share one journal commit.
  fuse_loop_cfg_set_max_threads(cfg.get(), unsigned(threads));
  fuse_loop_cfg_set_clone_fd(cfg.get(), 0);
  return fuse_session_loop_mt(se, cfg.get());
}

// Mounts the session on the kernel and serves it until unmount. Returns
// the exit code; the engine is unmounted by destroy (or by the caller if
// the session never started).
//
// The kernel caps FUSE readahead at max_readahead (1 MiB, see
// fs/capabilities.cc) but leaves the mount's bdi at 128 KiB; raise it so a
// cold sequential read arrives as large requests. Best effort: the device
// number comes from mountinfo, since stat() on the mountpoint would wait
// for the not-yet-running session.
void raise_readahead(const std::string& mountpoint) {
  for (const MountInfoEntry& e : read_mountinfo()) {
    if (e.mount_point != mountpoint) continue;
    std::ofstream ra("/sys/class/bdi/" + e.devno + "/read_ahead_kb");
    ra << 1024;
  }
}

int serve(MountContext& ctx, const CommandLine& cl, const std::string& mountpoint,
          const ParsedMountOptions& mo, Background& bg) {
  FuseArgs args;
  if (!args.add("stablefs") || !args.add("-o") || !args.add(join_fuse_options(mo.fuse_options)) ||
      (cl.debug && !args.add("-d"))) {
    std::fprintf(stderr, "stablefs: out of memory\n");
    return kExitFailure;
  }
  fuse_lowlevel_ops ops = make_lowlevel_ops();
  SessionPtr se(fuse_session_new(&args.args, &ops, sizeof(ops), &ctx));
  if (!se) {
    std::fprintf(stderr, "stablefs: cannot start the FUSE session (see the message above)\n");
    return kExitFailure;
  }
  if (fuse_set_signal_handlers(se.get()) != 0) return kExitFailure;
  SignalHandlers signals{se.get()};
  if (fuse_session_mount(se.get(), mountpoint.c_str()) != 0) {
    std::fprintf(stderr, "stablefs: cannot mount on %s (see the message above)\n",
                 mountpoint.c_str());
    return kExitFailure;
  }
  KernelMount kernel_mount{se.get()};
  ctx.set_session(se.get());
  // Best effort: without the hooks the mount works as libfuse negotiates
  // it, with a GETXATTR before every write. Idmapped mounts are allowed
  // except under allow_root, which libfuse enforces by request uids.
  const bool allow_root = std::find(mo.fuse_options.begin(), mo.fuse_options.end(),
                                    "allow_root") != mo.fuse_options.end();
  if (int e = install_kernel_channel(se.get(), /*allow_idmap=*/!allow_root); e != 0)
    std::fprintf(stderr, "stablefs: cannot hook the FUSE channel (%s); serving without it\n",
                 std::strerror(-e));
  set_statx_source(statx_source_for(ctx));
  raise_readahead(mountpoint);
  bg.report(kExitOk);
  (void)fuse_daemonize(/*foreground=*/1);  // only chdir("/"): we forked already
  int ret = run_loop(se.get(), cl.single_threaded, mo.request_threads);
  // 0 after an unmount; a positive value is the signal (SIGINT, SIGTERM,
  // SIGHUP) that asked us to stop, which is a normal way to end too.
  return ret < 0 ? kExitFailure : kExitOk;
}

const char* open_failure_text(int e) {
  switch (e) {
    case EBUSY: return "in use (already mounted, or being checked)";
    case ENOTBLK: return "neither an image file nor a block device";
    default: return std::strerror(e);
  }
}

const char* mount_failure_hint(int e) {
  switch (e) {
    case EUCLEAN: return "not a stablefs image, or its superblock is corrupt (try fsck.stablefs)";
    case EBUSY: return "in use (already mounted, or being checked)";
    case EROFS: return "read-only (mount with -o ro)";
    default: return std::strerror(e);
  }
}

// The image is in use. If a daemon serves it in a mount this process
// sees, share that mount (tools/share_mount.h): kExitOk or kExitFailure.
// Otherwise nullopt, with a hint for the "in use" message in *hint.
std::optional<int> share_if_served(const CommandLine& cl, const std::string& target,
                                   const std::string& mountpoint, const ParsedMountOptions& mo,
                                   std::string* hint) {
  ShareResult shared = share_served_mount({target, mountpoint, cl.option_strings, mo});
  switch (shared.outcome) {
    case ShareResult::Outcome::kShared:
      // stderr, as every line from the daemon: a kernel filesystem's second
      // mount prints nothing on stdout either.
      std::fprintf(stderr, "%s\n", shared.message.c_str());
      return kExitOk;
    case ShareResult::Outcome::kRefused:
      std::fprintf(stderr, "stablefs: cannot mount %s on %s: %s\n", target.c_str(),
                   mountpoint.c_str(), shared.message.c_str());
      return kExitFailure;
    case ShareResult::Outcome::kNoMount:
      *hint = shared.message;
      return std::nullopt;
  }
  return kExitFailure;
}

int run(const CommandLine& cl, const std::string& target, const std::string& mountpoint,
        const ParsedMountOptions& mo, Background& bg) {
  OpenOptions oo;
  oo.read_only = mo.fs.read_only;
  oo.nbd_connections = mo.nbd_connections;
  auto dev = open_device(target, oo);
  std::string hint;
  // A read-only open shares the image's lock with a read-only daemon, so
  // it opens even when one serves the image; the mount's source says so.
  const bool busy = !dev.ok() && dev.error() == EBUSY;
  if (busy || (dev.ok() && oo.read_only && is_mount_source(target)))
    if (auto code = share_if_served(cl, target, mountpoint, mo, &hint)) return *code;
  if (busy) {
    // A daemon that is only finishing an unmount still holds the image for
    // a moment: wait for it. An image that is mounted is refused at once.
    // validate_paths made `target` canonical (or kept the NBD URI).
    if (!is_mount_source(target)) {
      oo.busy_wait_ms = 30000;
      dev = open_device(target, oo);
    }
  }
  if (!dev.ok()) {
    // One line, as every refusal: an image in use is shared only through
    // a mount of it this process can see.
    if (dev.error() == EBUSY && hint.empty())
      hint = "no mount of it to share is visible here (another mount namespace, or its daemon "
             "is going away)";
    std::fprintf(stderr, "stablefs: cannot open %s: %s%s%s\n", target.c_str(),
                 open_failure_text(dev.error()), hint.empty() ? "" : "; ", hint.c_str());
    return kExitFailure;
  }
  // The identity the mount answers with (fs/mount_identity.h): stat'ed
  // now that the image is locked, so the path names what was locked.
  auto identity =
      identify_source(target, encode_daemon_options(daemon_options_of(mo)), mountpoint);
  MountOptions fo = mo.fs;
  fo.counters_mountpoint = mountpoint;  // canonical (validate_paths)
  fo.source = target;
  std::string why;
  auto fs = Filesystem::mount(std::move(*dev), fo, &why);
  if (!fs.ok()) {
    std::fprintf(stderr, "stablefs: cannot mount %s: %s\n", target.c_str(),
                 why.empty() ? mount_failure_hint(fs.error()) : why.c_str());
    return kExitFailure;
  }
  MountContext ctx(**fs, mo.fs);
  if (identity.ok()) ctx.set_identity(*identity);
  int code = serve(ctx, cl, mountpoint, mo, bg);
  if (!ctx.unmount_once().ok()) code = kExitFailure;  // already logged
  return code;
}

}  // namespace
}  // namespace stablefs

namespace stablefs {
namespace {

// Whether the daemon serving `mountpoint` refuses changes, from its live
// counters (named after the mount it was started on, when `mountpoint`
// shares it); false when it cannot tell (no counters segment).
bool served_read_only(const std::string& mountpoint) {
  char real[PATH_MAX];
  if (::realpath(mountpoint.c_str(), real) == nullptr) return false;
  std::string why;
  auto view = stablefs::CountersView::open(real, &why);
  if (!view.ok() && view.error() == ENOENT)
    if (std::string first = counters_mountpoint_for(real); first != real)
      view = stablefs::CountersView::open(first, &why);
  return view.ok() && (*view)->counters().read_only.load() != 0;
}

// `mount -o remount,...` runs this helper again (through mount.fuse3) on
// a live mount. No new daemon: the kernel changes the mount's flags and the
// running daemon keeps serving it, as for any FUSE filesystem.
int remount(const CommandLine& cl) {
  unsigned long flags = MS_REMOUNT;
  for (const std::string& s : cl.option_strings) {
    std::istringstream in(s);
    std::string o;
    while (std::getline(in, o, ',')) {
      if (o == "ro") flags |= MS_RDONLY;
      else if (o == "nosuid") flags |= MS_NOSUID;
      else if (o == "nodev") flags |= MS_NODEV;
      else if (o == "noexec") flags |= MS_NOEXEC;
      else if (o == "noatime") flags |= MS_NOATIME;
      else if (o == "sync") flags |= MS_SYNCHRONOUS;
      else if (o == "dirsync") flags |= MS_DIRSYNC;
    }
  }
  if (!(flags & MS_RDONLY) && served_read_only(cl.mountpoint)) {
    // The kernel would let the remount through and the daemon would go on
    // refusing every change with EROFS: say so instead.
    std::fprintf(stderr,
                 "stablefs: cannot remount %s read-write: its daemon serves it read-only "
                 "(mounted with -o ro, or the journal aborted); unmount it and mount it again "
                 "without ro\n",
                 cl.mountpoint.c_str());
    return kExitFailure;
  }
  if (::mount(nullptr, cl.mountpoint.c_str(), nullptr, flags, nullptr) != 0) {
    std::fprintf(stderr, "stablefs: cannot remount %s: %s\n", cl.mountpoint.c_str(),
                 std::strerror(errno));
    return kExitFailure;
  }
  return kExitOk;
}

bool wants_remount(const CommandLine& cl) {
  for (const std::string& s : cl.option_strings) {
    std::istringstream in(s);
    std::string o;
    while (std::getline(in, o, ','))
      if (o == "remount") return true;
  }
  return false;
}

}  // namespace
}  // namespace stablefs

int main(int argc, char** argv) {
  using namespace stablefs;
  CommandLine cl = parse_command_line(argc, argv);
  if (wants_remount(cl)) return remount(cl);
  ParsedMountOptions mo;
  for (const std::string& s : cl.option_strings) {
    std::string why;
    if (!parse_mount_options(s, &mo, &why).ok()) {
      std::fprintf(stderr, "%s\n", why.c_str());
      return kExitFailure;
    }
  }
  if (cl.option_strings.empty()) {
    std::string why;
    (void)parse_mount_options("", &mo, &why);  // adds default_permissions
  }
  auto [target, mountpoint] = validate_paths(cl);
  add_mount_identity(&mo, target);

  Background bg;
  if (!cl.foreground) bg.detach();
  int code = run(cl, target, mountpoint, mo, bg);
  bg.report(code);  // no-op once the mount was reported
  return code;
}
