#include "tests/integration/nbd_server.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "tests/integration/process.h"

namespace stablefs::integ {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kStartDeadline = std::chrono::seconds(10);

// Whether something listens on the unix socket `path`. The listen backlog
// accepts the connection whether or not the server has called accept, and
// closing at once costs nbdkit and qemu-nbd only a logged failed handshake.
bool socket_accepts(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

std::vector<std::string> flaky_flush_args(const std::string& image, const std::string& trigger) {
  // eval passes (method, handle, count, offset) as $1..$4; an error is a
  // message starting with the errno name on stderr and exit status 1.
  return {"eval",
          "thread_model=echo parallel",
          "get_size=stat -L -c %s '" + image + "'",
          "can_flush=exit 0",
          "pread=dd if='" + image +
              "' iflag=skip_bytes,count_bytes skip=$4 count=$3 status=none",
          "pwrite=dd of='" + image +
              "' oflag=seek_bytes conv=notrunc,fdatasync seek=$4 status=none",
          "flush=if [ -e '" + trigger + "' ]; then echo 'EIO flush failed' >&2; exit 1; fi"};
}

std::unique_ptr<NbdServer> NbdServer::launch(std::vector<std::string> argv, std::string socket,
                                             std::string log_path, std::string* why) {
  std::unique_ptr<NbdServer> s(new NbdServer(std::move(argv), std::move(socket),
                                             std::move(log_path)));
  if (!s->start(why)) return nullptr;
  return s;
}

std::unique_ptr<NbdServer> NbdServer::nbdkit(const std::string& dir,
                                             const std::vector<std::string>& args,
                                             std::string* why) {
  std::string sock = dir + "/nbd.sock";
  // -f: stay our child, so the pid we hold is the server's.
  std::vector<std::string> argv = {"nbdkit", "-f", "--exit-with-parent", "-U", sock};
  argv.insert(argv.end(), args.begin(), args.end());
  return launch(std::move(argv), sock, dir + "/nbd-server.log", why);
}

std::unique_ptr<NbdServer> NbdServer::qemu_nbd(const std::string& dir, const std::string& image,
                                               const std::string& format, std::string* why) {
  std::string sock = dir + "/nbd.sock";
  std::vector<std::string> argv = {"qemu-nbd", "--persistent", "-k", sock, "-f", format,
                                   "--cache=writeback", image};
  return launch(std::move(argv), sock, dir + "/nbd-server.log", why);
}

bool NbdServer::start(std::string* why) {
  ::unlink(socket_.c_str());  // a killed server leaves its socket file behind
  std::vector<char*> args;
  for (auto& a : argv_) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    *why = std::string("fork: ") + std::strerror(errno);
    return false;
  }
  if (pid == 0) {
    // Only async-signal-safe calls until exec.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) _exit(127);
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    ::execvp(args[0], args.data());
    _exit(127);
  }
  pid_ = pid;
  auto end = Clock::now() + kStartDeadline;
  while (!socket_accepts(socket_)) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      *why = argv_[0] + " exited (" + describe_wait_status(status) + "):\n" + log();
      return false;
    }
    if (Clock::now() >= end) {
      stop();
      *why = argv_[0] + " did not listen on " + socket_ + " within 10 s:\n" + log();
      return false;
    }
    ::usleep(10000);  // polling an external process's socket, with a deadline
  }
  return true;
}

bool NbdServer::restart(std::string* why) {
  stop();
  return start(why);
}

void NbdServer::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  int status = 0;
  if (!wait_with_deadline(pid_, std::chrono::seconds(10), &status)) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
  }
  pid_ = -1;
}

void NbdServer::kill_hard() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

std::string NbdServer::log() const { return read_file(log_path_); }

NbdServer::~NbdServer() { stop(); }

}  // namespace stablefs::integ
