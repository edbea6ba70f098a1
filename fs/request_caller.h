// The process behind a FUSE request: its ids, and as far as dropping
// setuid/setgid goes, its privileges (core's PrivilegeCaller). The request
// header carries the caller's pid, fsuid and fsgid, not its capabilities or
// supplementary groups: those come from /proc/<pid>/status, read once and
// only when asked (the engine asks only about a file with a setid bit). A
// caller that cannot be looked up (gone, or a request the kernel made
// itself, pid 0) counts as unprivileged and outside every group but its
// fsgid: a privilege kept by mistake is worse than one dropped by mistake.
//
// Once the daemon allows idmapped mounts (FUSE_ALLOW_IDMAP,
// fs/kernel_channel.h), the header's fsuid and fsgid are
// FUSE_INVALID_UIDGID in every request but the ones that create an inode
// (MKNOD, MKDIR, SYMLINK, CREATE, TMPFILE, RENAME2 with RENAME_WHITEOUT),
// on plain mounts too: only for those does the kernel know the mount's
// idmap. For the others the ids come from /proc as well, where the kernel
// shows them as the header would have (in the daemon's user namespace),
// and an unknown one is the overflow id 65534, as the kernel's own
// from_kuid_munged gives. The caller is blocked in the request until we
// answer, so its pid cannot name another process meanwhile.
#pragma once

#include <fuse_lowlevel.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/filesystem.h"

namespace stablefs {

class RequestCaller final : public PrivilegeCaller {
 public:
  // `has_fsetid` when the request already says it: the kernel sets
  // FUSE_WRITE_KILL_SUIDGID on a WRITE exactly when the writer lacks
  // CAP_FSETID.
  explicit RequestCaller(fuse_req_t req, std::optional<bool> has_fsetid = std::nullopt);

  bool has_fsetid() override;
  bool in_group(uint32_t gid) override;

  // The caller's fsuid and fsgid, as the kernel sees them from the
  // daemon's user namespace (on an idmapped mount: not mapped through the
  // mount's idmap, which only creations carry).
  uint32_t fsuid();
  uint32_t fsgid();

 private:
  void read_status();

  pid_t pid_ = 0;
  std::optional<uint32_t> fsuid_, fsgid_;
  std::optional<bool> has_fsetid_;
  bool status_read_ = false;
  uint64_t effective_caps_ = 0;
  std::vector<uint32_t> groups_;
};

// The header's value for an id the kernel could not map for the request
// (FUSE_INVALID_UIDGID, protocol 7.40; Debian 12's <linux/fuse.h> is 7.38).
constexpr uint32_t kInvalidRequestId = UINT32_MAX;
// What the kernel writes for an id it cannot show (overflowuid/gid).
constexpr uint32_t kOverflowId = 65534;

// The fields of a /proc/<pid>/status text this needs: CapEff, Groups and
// the fs ids (the fourth of Uid: and Gid:). Unparsable or missing fields
// leave their defaults (no capability, no group, no id).
struct ProcStatus {
  uint64_t effective_caps = 0;
  std::vector<uint32_t> groups;
  std::optional<uint32_t> fsuid, fsgid;
};
ProcStatus parse_proc_status(const std::string& text);

}  // namespace stablefs
