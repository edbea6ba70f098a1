// An NBD server run by a test: nbdkit or qemu-nbd in the foreground, on a
// unix socket in the test's temp dir. The test owns it by pid: stop() (and
// the destructor) send SIGTERM to that pid only and reap it, SIGKILL after a
// deadline; the child also dies with the test process (PR_SET_PDEATHSIG),
// so a crashed test leaves no server behind.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace stablefs::integ {

// nbdkit arguments for a file-backed export (the eval plugin running dd)
// whose flushes fail with EIO while `trigger` exists: nbdkit 1.32's error
// filter can fail reads and writes but not flushes. Slow (a process per
// command), so only for fault tests.
std::vector<std::string> flaky_flush_args(const std::string& image, const std::string& trigger);

class NbdServer {
 public:
  // `nbdkit [filters and plugin args...]` on dir/nbd.sock, e.g.
  // {"memory", "1G"} or {"--filter=error", "memory", "1G", "error-pread-rate=1"}.
  static std::unique_ptr<NbdServer> nbdkit(const std::string& dir,
                                           const std::vector<std::string>& args, std::string* why);
  // qemu-nbd serving `image` (format raw or qcow2) with its defaults, one
  // client at a time (--shared=1), plus --persistent so a remount can
  // connect again after the first client left.
  static std::unique_ptr<NbdServer> qemu_nbd(const std::string& dir, const std::string& image,
                                             const std::string& format, std::string* why);
  ~NbdServer();
  NbdServer(const NbdServer&) = delete;
  NbdServer& operator=(const NbdServer&) = delete;

  // nbd+unix:///?socket=... for this server.
  std::string uri() const { return "nbd+unix:///?socket=" + socket_; }
  pid_t pid() const { return pid_; }
  const std::string& socket_path() const { return socket_; }
  std::string log() const;

  // SIGTERM and reap (SIGKILL after 10 s). Idempotent.
  void stop();
  // SIGKILL and reap: the server vanishes mid-conversation.
  void kill_hard();
  // Starts the same command again on the same socket (after stop or
  // kill_hard). False with *why when it does not come up.
  bool restart(std::string* why);

 private:
  NbdServer(std::vector<std::string> argv, std::string socket, std::string log_path)
      : argv_(std::move(argv)), socket_(std::move(socket)), log_path_(std::move(log_path)) {}
  bool start(std::string* why);
  static std::unique_ptr<NbdServer> launch(std::vector<std::string> argv, std::string socket,
                                           std::string log_path, std::string* why);

  std::vector<std::string> argv_;
  std::string socket_;
  std::string log_path_;
  pid_t pid_ = -1;
};

}  // namespace stablefs::integ
