#include "fs/request_caller.h"

#include <linux/capability.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

namespace stablefs {

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
    }
  }
  return st;
}

RequestCaller::RequestCaller(fuse_req_t req, std::optional<bool> has_fsetid)
    : has_fsetid_(has_fsetid) {
  if (const fuse_ctx* ctx = fuse_req_ctx(req)) {
    pid_ = ctx->pid;
    fsgid_ = ctx->gid;
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
}

bool RequestCaller::has_fsetid() {
  if (!has_fsetid_) {
    read_status();
    has_fsetid_ = (effective_caps_ >> CAP_FSETID) & 1;
  }
  return *has_fsetid_;
}

bool RequestCaller::in_group(uint32_t gid) {
  if (gid == fsgid_) return true;
  read_status();
  return std::find(groups_.begin(), groups_.end(), gid) != groups_.end();
}

}  // namespace stablefs
