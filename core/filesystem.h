// The engine's public face: every filesystem operation as a plain call
// with errors as values. fs/ translates FUSE requests into these calls and
// knows nothing of the disk; this API knows nothing of FUSE.
//
// Inode numbers are stable across mounts (ino = inode-table slot + 1, root
// is 1) and equal the FUSE node ids. A generation number guards reuse.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/base/format.h"
#include "core/base/result.h"
#include "core/io/block_device.h"

namespace stablefs {

enum class StablePages { kWait, kShadow, kBounce, kOff };
enum class AtimeMode { kRelatime, kNoatime, kStrict };
// errors=: what the mount does when it finds corrupt metadata while
// serving a request (ext4's option; there is no `panic`: the daemon
// dying would take every open file with it).
enum class ErrorsBehavior {
  kRemountRo,  // from then on every change gets EROFS; reads go on
  kContinue,   // the request that found it gets EIO; everything else goes on
};

struct MountOptions {
  uint64_t cache_bytes = 256ull << 20;  // cache_size=
  // meta_cache=: metadata blocks kept in memory; blocks nobody holds are
  // evicted beyond it (they are read and verified again when needed).
  uint64_t meta_cache_bytes = 128ull << 20;
  StablePages stable_pages = StablePages::kWait;
  bool verify_writes = false;
  // discard: blocks whose free is committed are discarded (NBD_CMD_TRIM, a
  // hole punched in an image file) before they can be allocated again.
  // Off by default, as on ext4: each commit that frees blocks waits for the
  // discards.
  bool discard = false;
  // journal_data=: a run of at most this many consecutive dirty pages whose
  // blocks are already written is written back through the journal
  // (journal/FORMAT.md, "Journaled data") instead of to new blocks; 0 never.
  // Longer runs stream better to new blocks (one write, no second copy).
  static constexpr uint32_t kJournalDataPages = 16;
  uint32_t journal_data_pages = kJournalDataPages;
  // journal_deltas=on|off: a metadata block already in the log since the
  // last checkpoint is logged as the bytes that changed (journal/FORMAT.md,
  // "Deltas").
  bool journal_deltas = true;
  bool writeback_cache = false;      // FUSE writeback cache (fs/ negotiates it)
  uint32_t commit_seconds = 5;       // commit=
  // writeback_delay=: how long dirty pages may sit before the background
  // flusher starts writing them, in ms. 0 is write-behind: writeback starts
  // as soon as a write() returns, so I/O overlaps the application's next
  // write and fsync() finds less to do.
  uint32_t writeback_delay_ms = 1000;
  // entry_timeout= / attr_timeout= / negative_timeout=, in seconds: how
  // long the kernel may trust a name, attributes, and "no such name". The
  // engine ignores them; fs/fuse_adapter.h (MountContext) says why long
  // values are safe.
  double entry_timeout = 60.0;
  double attr_timeout = 60.0;
  double negative_timeout = 60.0;
  bool read_only = false;
  // norecovery (or noload), ext4's: a read-only mount that leaves the
  // journal unreplayed, so it shows the home locations as the last
  // checkpoint left them (possibly inconsistent): for inspection and
  // rescue. Only with read_only: mount refuses it otherwise (EINVAL).
  bool norecovery = false;
  ErrorsBehavior errors = ErrorsBehavior::kRemountRo;  // errors=
  AtimeMode atime = AtimeMode::kRelatime;  // noatime / relatime / strictatime
  bool nodiratime = false;
  // Canonical mountpoint: when set, live counters are published in a
  // shared-memory segment named after it (core/stats/live_counters.h).
  std::string counters_mountpoint;
  std::string source;  // the image or device, for the counters segment
};

struct Attr {
  uint64_t ino = 0;
  uint32_t mode = 0;
  uint32_t nlink = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;
  uint64_t blocks512 = 0;  // st_blocks, 512-byte units
  uint64_t rdev = 0;
  Timespec atime, mtime, ctime, btime;
  uint32_t generation = 0;
};

struct SetAttr {
  std::optional<uint32_t> mode;
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  std::optional<uint64_t> size;
  std::optional<Timespec> atime;  // already resolved (UTIME_NOW -> now) by fs/
  std::optional<Timespec> mtime;
  std::optional<Timespec> ctime;
  // Drop what a truncate or chown by an unprivileged caller drops in the
  // VFS: setuid, setgid when group-executable, and file capabilities
  // (FATTR_KILL_SUIDGID, sent under FUSE_HANDLE_KILLPRIV_V2).
  bool kill_suidgid = false;
  // atime or mtime were given by the caller (utimes with times, the VFS's
  // ATTR_TIMES_SET), not "now": an append-only inode refuses that.
  bool explicit_times = false;
};

struct Creds {
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t umask = 0;
};

struct FsStat {
  uint64_t block_size = kBlockSize;
  uint64_t blocks = 0, blocks_free = 0;
  uint64_t files = 0, files_free = 0;
  uint32_t name_max = kMaxNameLen;
};

struct DirListEntry {
  std::string name;
  uint64_t ino = 0;
  uint32_t type = 0;    // DT_* value
  uint64_t cookie = 0;  // pass back as `after` to continue after this entry
};

// setxattr flag for system.posix_acl_access, as the kernel's
// FUSE_SETXATTR_ACL_KILL_SGID: the caller is outside the file's group and
// lacks CAP_FSETID, so the mode the ACL sets loses setgid (the VFS's
// posix_acl_update_mode rule).
inline constexpr int kSetxattrAclKillSgid = 1 << 8;

// The caller of a request that changes a file's data, as the VFS asks
// about it when it drops setuid/setgid. Asked lazily: most files have no
// such bit, and then nothing is asked.
class PrivilegeCaller {
 public:
  virtual ~PrivilegeCaller() = default;
  // CAP_FSETID: a change keeps setuid and setgid.
  virtual bool has_fsetid() = 0;
  // `gid` is the caller's filesystem gid or one of its supplementary groups.
  virtual bool in_group(uint32_t gid) = 0;
};

class Filesystem {
 public:
  virtual ~Filesystem() = default;

  // Replays the journal, loads metadata and starts the background threads.
  // On failure *why (when given) holds a one-line reason; without it the
  // reason is logged.
  static Result<std::unique_ptr<Filesystem>> mount(std::unique_ptr<BlockDevice> dev,
                                                   const MountOptions& opts,
                                                   std::string* why = nullptr);
  // Writes back everything, commits, checkpoints and marks the image clean.
  virtual Status unmount() = 0;

  // ---- Inode lifetime (the kernel's lookup counts) ----
  // Every Attr returned by lookup/create/mknod/mkdir/symlink/link counts as
  // one kernel reference; forget() drops n of them. An inode whose link
  // count is 0 is freed when its last reference goes.
  virtual void forget(uint64_t ino, uint64_t n) = 0;

  // ---- Names ----
  virtual Result<Attr> lookup(uint64_t parent, std::string_view name) = 0;
  virtual Result<Attr> mknod(uint64_t parent, std::string_view name, uint32_t mode,
                             uint64_t rdev, const Creds& c) = 0;
  virtual Result<Attr> mkdir(uint64_t parent, std::string_view name, uint32_t mode,
                             const Creds& c) = 0;
  virtual Result<Attr> symlink(uint64_t parent, std::string_view name,
                               std::string_view target, const Creds& c) = 0;
  virtual Result<std::string> readlink(uint64_t ino) = 0;
  // O_TMPFILE: a regular file in `parent`'s care (group, default ACL) but
  // with no name and a link count of 0, freed when its last reference
  // goes unless link() names it first (linkable: the open had no O_EXCL).
  virtual Result<Attr> tmpfile(uint64_t /*parent*/, uint32_t /*mode*/, bool /*linkable*/,
                               const Creds& /*c*/) {
    return err(EOPNOTSUPP);
  }
  virtual Result<Attr> link(uint64_t ino, uint64_t new_parent, std::string_view new_name) = 0;
  virtual Status unlink(uint64_t parent, std::string_view name) = 0;
  virtual Status rmdir(uint64_t parent, std::string_view name) = 0;
  // flags: 0, RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT or
  // RENAME_NOREPLACE | RENAME_WHITEOUT. A whiteout (a character device 0:0,
  // mode 0, as overlayfs expects) takes the source's name in the same
  // transaction; c owns it.
  virtual Status rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                        std::string_view new_name, unsigned flags, const Creds& c) = 0;

  // ---- Attributes ----
  virtual Result<Attr> getattr(uint64_t ino) = 0;
  virtual Result<Attr> setattr(uint64_t ino, const SetAttr& sa) = 0;
  virtual Result<FsStat> statfs() = 0;

  // ---- Data ----
  // open() checks the inode type against the flags and returns pending
  // errors; O_TRUNC arrives separately as setattr(size=0).
  virtual Status open(uint64_t ino, int flags) = 0;
  virtual Result<size_t> read(uint64_t ino, uint64_t off, size_t size, char* out) = 0;
  virtual Result<size_t> write(uint64_t ino, uint64_t off, const char* data, size_t size) = 0;
  // What the VFS's file_remove_privs does before a write(2) or an
  // fallocate, for the filesystem that handles it itself
  // (FUSE_HANDLE_KILLPRIV_V2): drops the file capability
  // (security.capability) and, unless the caller has CAP_FSETID, setuid,
  // and setgid when the file is group-executable or the caller is outside
  // its group. True when it dropped something (the kernel's cached mode is
  // then stale). Costs no journal handle, and asks `caller` nothing, when
  // there is nothing to drop.
  virtual Result<bool> kill_privileges(uint64_t ino, PrivilegeCaller& caller) = 0;

  // ---- Shutdown (FS_IOC_SHUTDOWN) ----
  // Commits what the journal holds, then stops: nothing more reaches the
  // disk (dirty pages that were never written back are lost, as in a
  // crash), and the FUSE layer answers EIO to every request that needs
  // the filesystem until it is mounted again, which replays the journal.
  virtual Status shutdown() { return err(ENOTTY); }
  virtual bool shut_down() const { return false; }
  // ---- FITRIM (fstrim) ----
  // Discards the free blocks in the device byte range [start, start+len)
  // that lie in free runs of at least min_len bytes; the bytes discarded.
  // EINVAL, as ext4: start past the device, len below one block, min_len
  // above the device. EOPNOTSUPP when the device cannot discard.
  virtual Result<uint64_t> trim(uint64_t /*start*/, uint64_t /*len*/, uint64_t /*min_len*/) {
    return err(ENOTTY);
  }
  // A request failed with EUCLEAN: the engine found a metadata block (or a
  // record in one) that fails verification. Counts it and applies the
  // errors= behaviour; the caller answers the request with EIO.
  virtual void metadata_corruption_found() {}
  // Writeback errors reach applications as the kernel's errseq does: an
  // open file description starts at sample_write_errors() and keeps that
  // cursor; flush (every close) and fsync report an error that happened
  // since the description last checked, once per description. A null
  // cursor stands for one description per inode (callers with no open
  // file). An error is never lost silently.
  virtual uint64_t sample_write_errors(uint64_t ino) = 0;
  virtual Status flush(uint64_t ino, uint64_t* cursor = nullptr) = 0;
  virtual Status fsync(uint64_t ino, bool datasync, uint64_t* cursor = nullptr) = 0;
  virtual Status fallocate(uint64_t ino, int mode, uint64_t off, uint64_t len) = 0;
  // SEEK_DATA / SEEK_HOLE.
  virtual Result<uint64_t> seek_data_hole(uint64_t ino, uint64_t off, int whence) = 0;
  virtual Result<size_t> copy_file_range(uint64_t ino_in, uint64_t off_in, uint64_t ino_out,
                                         uint64_t off_out, size_t len) = 0;

  // ---- Directories ----
  virtual Status opendir(uint64_t ino) = 0;
  // Emits entries after cookie `after` (0 = from the start, including "."
  // and ".."), until emit returns false.
  virtual Status readdir(uint64_t ino, uint64_t after,
                         const std::function<bool(const DirListEntry&)>& emit) = 0;
  virtual Status fsyncdir(uint64_t ino, bool datasync) = 0;

  // ---- Inode flags (chattr: FS_IOC_GETFLAGS / FS_IOC_SETFLAGS) ----
  // FS_*_FL values. Only FS_IMMUTABLE_FL, FS_APPEND_FL, FS_NODUMP_FL,
  // FS_NOATIME_FL and FS_SYNC_FL exist; setting any other is EOPNOTSUPP. The caller has
  // checked that the change is allowed (the kernel does, before the ioctl).
  virtual Result<uint32_t> get_inode_flags(uint64_t /*ino*/) { return err(ENOTTY); }
  virtual Status set_inode_flags(uint64_t /*ino*/, uint32_t /*fs_flags*/) { return err(ENOTTY); }

  // ---- Extended attributes ----
  // flags: 0, XATTR_CREATE or XATTR_REPLACE, and for the access ACL
  // kSetxattrAclKillSgid.
  virtual Status setxattr(uint64_t ino, std::string_view name, std::string_view value,
                          int flags) = 0;
  virtual Result<std::string> getxattr(uint64_t ino, std::string_view name) = 0;
  // NUL-separated names, as listxattr(2) returns them.
  virtual Result<std::string> listxattr(uint64_t ino) = 0;
  virtual Status removexattr(uint64_t ino, std::string_view name) = 0;
};

}  // namespace stablefs
