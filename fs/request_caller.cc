#include "fs/request_caller.h"

#include <linux/capability.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

namespace stablefs {
namespace {

// The fourth field of a "Uid:" or "Gid:" line (real, effective, saved, fs).
std::optional<uint32_t> fs_id_of(const std::string& fields) {
  std::istringstream in(fields);
  unsigned long id[4];
  for (unsigned long& v : id)
    if (!(in >> v)) return std::nullopt;
  if (id[3] > UINT32_MAX) return std::nullopt;
  return uint32_t(id[3]);
}

}  // namespace

ProcStatus parse_proc_status(const std::string& text) {
  ProcStatus st;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("CapEff:", 0) == 0) {
      try {
        st.effective_caps = std::stoull(line.substr(7), nullptr, 16);
      } catch (...) {
        st.effective_caps = 0;
      }
    } else if (line.rfind("Groups:", 0) == 0) {
      std::istringstream gs(line.substr(7));
      unsigned long g;
      while (gs >> g) st.groups.push_back(uint32_t(g));
    } else if (line.rfind("Uid:", 0) == 0) {
      st.fsuid = fs_id_of(line.substr(4));
    } else if (line.rfind("Gid:", 0) == 0) {
      st.fsgid = fs_id_of(line.substr(4));
    }
  }
  return st;
}

RequestCaller::RequestCaller(fuse_req_t req, std::optional<bool> has_fsetid)
    : has_fsetid_(has_fsetid) {
  if (const fuse_ctx* ctx = fuse_req_ctx(req)) {
    pid_ = ctx->pid;
    if (ctx->uid != kInvalidRequestId) fsuid_ = ctx->uid;
    if (ctx->gid != kInvalidRequestId) fsgid_ = ctx->gid;
  }
}

void RequestCaller::read_status() {
  if (status_read_) return;
  status_read_ = true;
  if (pid_ <= 0) return;
  std::ifstream f("/proc/" + std::to_string(pid_) + "/status");
  if (!f) return;
  std::stringstream text;
  text << f.rdbuf();
  ProcStatus st = parse_proc_status(text.str());
  effective_caps_ = st.effective_caps;
  groups_ = std::move(st.groups);
  if (!fsuid_) fsuid_ = st.fsuid;
  if (!fsgid_) fsgid_ = st.fsgid;
}

uint32_t RequestCaller::fsuid() {
  if (!fsuid_) read_status();
  return fsuid_.value_or(kOverflowId);
}

uint32_t RequestCaller::fsgid() {
  if (!fsgid_) read_status();
  return fsgid_.value_or(kOverflowId);
}

bool RequestCaller::has_fsetid() {
  if (!has_fsetid_) {
    read_status();
    has_fsetid_ = (effective_caps_ >> CAP_FSETID) & 1;
  }
  return *has_fsetid_;
}

bool RequestCaller::in_group(uint32_t gid) {
  if (fsgid_ && gid == *fsgid_) return true;
  // The supplementary groups, and the fsgid when the header had none (an
  // fsgid /proc could not tell is no group at all, not the overflow id).
  read_status();
  if (fsgid_ && gid == *fsgid_) return true;
  return std::find(groups_.begin(), groups_.end(), gid) != groups_.end();
}

}  // namespace stablefs
