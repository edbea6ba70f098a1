// The process behind a FUSE request, as far as dropping setuid/setgid
// goes (core's PrivilegeCaller). The request header carries the caller's
// pid, fsuid and fsgid, not its capabilities or supplementary groups: those
// come from /proc/<pid>/status, read once and only when asked (the engine
// asks only about a file with a setid bit). A caller that cannot be looked
// up (gone, or a request the kernel made itself, pid 0) counts as
// unprivileged and outside every group but its fsgid: a privilege kept by
// mistake is worse than one dropped by mistake.
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

 private:
  void read_status();

  pid_t pid_ = 0;
  uint32_t fsgid_ = 0;
  std::optional<bool> has_fsetid_;
  bool status_read_ = false;
  uint64_t effective_caps_ = 0;
  std::vector<uint32_t> groups_;
};

// The fields of a /proc/<pid>/status text this needs: CapEff and Groups.
// Unparsable or missing fields leave their defaults (no capability, no
// group).
struct ProcStatus {
  uint64_t effective_caps = 0;
  std::vector<uint32_t> groups;
};
ProcStatus parse_proc_status(const std::string& text);

}  // namespace stablefs
