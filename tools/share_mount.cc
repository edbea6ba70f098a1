#include "tools/share_mount.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/base/unique_fd.h"
#include "core/io/open_device.h"
#include "fs/daemon_options.h"
#include "tools/mountinfo.h"

namespace stablefs {
namespace {

void copy_string(char (&dst)[1024], const std::string& src) {
  std::memset(dst, 0, sizeof dst);
  std::memcpy(dst, src.data(), std::min(src.size(), sizeof dst - 1));
}

// A detached copy of one mount (not of the mounts below it), and its root
// directory to ask through. Closing `tree` before it is attached drops the
// copy.
struct DetachedMount {
  UniqueFd tree;
  UniqueFd root;
};

Result<DetachedMount> clone_mount(const std::string& mount_point) {
  DetachedMount m;
  m.tree = UniqueFd(::open_tree(AT_FDCWD, mount_point.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
  if (!m.tree.ok()) return err(errno);
  m.root = UniqueFd(::openat(m.tree.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!m.root.ok()) return err(errno);
  return m;
}

// The per-mount flags the options ask for, as libfuse would set them on a
// mount of its own: nosuid and nodev unless suid or dev is given. noatime
// is set as libfuse would too, though FUSE leaves atime to the daemon,
// whose policy a second mount can only match (fs/daemon_options.h).
mount_attr per_mount_flags(const std::vector<std::string>& option_strings) {
  bool ro = false, nosuid = true, nodev = true, noexec = false, noatime = false;
  for (const std::string& s : option_strings)
    for (const std::string& o : split_mount_options(s)) {
      if (o == "ro" || o == "rw") ro = o == "ro";
      if (o == "suid" || o == "nosuid") nosuid = o == "nosuid";
      if (o == "dev" || o == "nodev") nodev = o == "nodev";
      if (o == "exec" || o == "noexec") noexec = o == "noexec";
      if (o == "atime" || o == "noatime") noatime = o == "noatime";
    }
  mount_attr attr{};
  attr.attr_clr = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC |
                  MOUNT_ATTR__ATIME;
  attr.attr_set = (ro ? MOUNT_ATTR_RDONLY : 0) | (nosuid ? MOUNT_ATTR_NOSUID : 0) |
                  (nodev ? MOUNT_ATTR_NODEV : 0) | (noexec ? MOUNT_ATTR_NOEXEC : 0) |
                  (noatime ? MOUNT_ATTR_NOATIME : MOUNT_ATTR_RELATIME);
  return attr;
}

std::string errno_text(int e) { return std::strerror(e); }

// Why a daemon serving the image cannot serve this mount as asked, or "".
std::string refusal(const ShareRequest& r, const MountIdentity& theirs,
                    const std::string& mount_point) {
  DaemonOptions running = decode_daemon_options(
      std::string(theirs.options, ::strnlen(theirs.options, sizeof theirs.options)));
  std::string where = r.target + " is mounted at " + mount_point + " (daemon pid " +
                      std::to_string(theirs.pid) + ")";
  if (running["read_only"] == "on" && !r.options.fs.read_only)
    return where + " read-only: a second mount shares that daemon, which refuses every change; "
                   "mount with -o ro, or unmount " + mount_point + " and mount it read-write";
  auto conflicts = daemon_option_conflicts(r.option_strings, r.options, running);
  if (conflicts.empty()) return "";
  std::string list;
  for (const std::string& c : conflicts) list += (list.empty() ? "" : ", ") + c;
  return where + ": a second mount shares that daemon and cannot change what only a new "
                 "daemon could: " + list + ". Leave these options out, or unmount every mount "
                 "of it first";
}

// Attaches the checked copy at r.mountpoint with the flags asked for, then
// asks again through the new mount point: a daemon that went away between
// the check and the attach leaves nothing behind.
ShareResult attach(const ShareRequest& r, DetachedMount& m, const MountIdentity& theirs,
                   const std::string& mount_point) {
  mount_attr attr = per_mount_flags(r.option_strings);
  if (::mount_setattr(m.tree.get(), "", AT_EMPTY_PATH, &attr, sizeof attr) != 0)
    return {ShareResult::Outcome::kRefused,
            "cannot set the mount flags of a second mount of " + mount_point + ": " +
                errno_text(errno)};
  if (::move_mount(m.tree.get(), "", AT_FDCWD, r.mountpoint.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0)
    return {ShareResult::Outcome::kRefused,
            "cannot mount " + mount_point + " again on " + r.mountpoint + ": " + errno_text(errno)};
  UniqueFd now(::open(r.mountpoint.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  auto again = now.ok() ? ask_mount_identity(now.get()) : Result<MountIdentity>(err(errno));
  if (!again.ok() || again->pid != theirs.pid || !same_source(*again, theirs)) {
    now.reset();
    ::umount2(r.mountpoint.c_str(), MNT_DETACH);
    return {ShareResult::Outcome::kNoMount,
            "its daemon went away while " + r.mountpoint + " was being attached to it"};
  }
  std::string line = "stablefs: " + r.target + " is mounted at " + mount_point +
                     " already (daemon pid " + std::to_string(theirs.pid) + "): " +
                     r.mountpoint + " shares that mount";
  if (attr.attr_set & MOUNT_ATTR_RDONLY) line += ", read-only";
  return {ShareResult::Outcome::kShared, line};
}

}  // namespace

Result<MountIdentity> identify_source(const std::string& source, const std::string& options,
                                     const std::string& counters_mountpoint) {
  MountIdentity id;
  id.magic = kMountIdentityMagic;
  id.version = kMountIdentityVersion;
  id.pid = ::getpid();
  copy_string(id.source, source);
  copy_string(id.options, options);
  copy_string(id.counters_mountpoint, counters_mountpoint);
  if (is_nbd_uri(source)) {
    id.kind = uint32_t(SourceKind::kNbd);
    return id;
  }
  struct stat st;
  if (::stat(source.c_str(), &st) != 0) return err(errno);
  if (S_ISBLK(st.st_mode)) {
    id.kind = uint32_t(SourceKind::kBlockDevice);
    id.rdev = st.st_rdev;
  } else {
    id.kind = uint32_t(SourceKind::kImageFile);
    id.dev = st.st_dev;
    id.ino = st.st_ino;
  }
  return id;
}

bool same_source(const MountIdentity& a, const MountIdentity& b) {
  if (a.magic != kMountIdentityMagic || b.magic != kMountIdentityMagic || a.kind != b.kind)
    return false;
  switch (SourceKind(a.kind)) {
    case SourceKind::kImageFile: return a.dev == b.dev && a.ino == b.ino;
    case SourceKind::kBlockDevice: return a.rdev == b.rdev;
    case SourceKind::kNbd:
      // A cut URI (no NUL in the buffer) never matches.
      return ::strnlen(a.source, sizeof a.source) < sizeof a.source &&
             std::strncmp(a.source, b.source, sizeof a.source) == 0;
  }
  return false;
}

ShareResult share_served_mount(const ShareRequest& r) {
  auto want = identify_source(r.target, "", "");
  if (!want.ok()) return {};
  // Only mounts of a filesystem's root: a bind of a subdirectory would
  // share less than the image. Those whose source reads as the target are
  // asked first, so other daemons are asked only when paths differ.
  std::vector<MountInfoEntry> candidates;
  for (MountInfoEntry& e : read_mountinfo())
    if (e.fstype == "fuse.stablefs" && e.root == "/") candidates.push_back(std::move(e));
  std::stable_partition(candidates.begin(), candidates.end(),
                        [&](const MountInfoEntry& e) { return e.source == r.target; });
  std::string hint;  // the first reason a candidate could not be asked
  for (const MountInfoEntry& e : candidates) {
    auto m = clone_mount(e.mount_point);
    auto theirs = m.ok() ? ask_mount_identity(m->root.get()) : Result<MountIdentity>(err(m.error()));
    if (!theirs.ok()) {
      if (hint.empty() && theirs.error() == EPERM)
        hint = "sharing the mount at " + e.mount_point + " needs CAP_SYS_ADMIN";
      else if (hint.empty() && theirs.error() != ENOTCONN)
        hint = "the stablefs mount at " + e.mount_point + " cannot say which image it serves (" +
               errno_text(theirs.error()) + ")";
      continue;
    }
    if (!same_source(*want, *theirs)) continue;
    if (std::string why = refusal(r, *theirs, e.mount_point); !why.empty())
      return {ShareResult::Outcome::kRefused, why};
    return attach(r, *m, *theirs, e.mount_point);
  }
  return {ShareResult::Outcome::kNoMount, hint};
}

}  // namespace stablefs
