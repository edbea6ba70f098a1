// NbdMount: a RealMount whose filesystem lives on an nbdkit export the test
// starts itself (serve), with nbdkit arguments of its choosing (filters:
// error, log, fua...). mkfs runs on image(), a plain image file, in SetUp;
// serve({"file", image()}) exports it; mount_nbd() mounts the URI.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/integration/mount_fixture.h"
#include "tests/integration/nbd_server.h"
#include "tests/integration/process.h"
#include "tests/integration/test_util.h"

namespace stablefs::integ {

inline std::string pattern(size_t bytes, char seed) {
  std::string s(bytes, '\0');
  for (size_t i = 0; i < bytes; i++) s[i] = char(seed + i * 7 + i / 4096);
  return s;
}

// Writes the whole file and fsyncs it; returns 0 or the errno of the first
// failing step (open, write, fsync, close).
inline int write_and_fsync(const std::string& path, const std::string& data) {
  UniqueFd fd = open_fd(path, O_WRONLY | O_CREAT | O_TRUNC);
  if (!fd.ok()) return errno;
  if (::write(fd.get(), data.data(), data.size()) != ssize_t(data.size())) return errno;
  if (::fsync(fd.get()) != 0) return errno;
  return ::close(fd.release()) == 0 ? 0 : errno;
}

class NbdMount : public RealMount {
 protected:
  std::string image_size() const override { return "64M"; }
  bool mount_in_setup() const override { return false; }

  void TearDown() override {
    RealMount::TearDown();  // unmounts and reaps the daemon first
    server_.reset();
  }

  // Serves with nbdkit `args` (their plugin takes the image).
  void serve(const std::vector<std::string>& args) {
    std::string why;
    server_ = NbdServer::nbdkit(dir(), args, &why);
    ASSERT_NE(server_, nullptr) << why;
  }

  void mount_nbd(const std::vector<std::string>& extra_args = {}) {
    DaemonLaunch l = launch_daemon(server_->uri(), mnt(), extra_args);
    ASSERT_TRUE(l.mounted) << "stablefs " << server_->uri() << " did not mount: "
                           << describe_wait_status(l.status) << "\n" << l.log
                           << "\n--- server log ---\n" << server_->log();
    pid_ = l.pid;
    log_path_ = l.log_path;
  }
  // Unmounts; returns the daemon's wait status.
  int unmount_nbd() {
    int status = stop_daemon(pid_, mnt());
    pid_ = -1;
    return status;
  }
  std::string log() const { return read_file(log_path_); }

  CommandResult fsck(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {fsck_bin()};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back(server_->uri());
    return run_command(argv, std::chrono::seconds(120));
  }

  std::unique_ptr<NbdServer> server_;
  pid_t pid_ = -1;
  std::string log_path_;
};

}  // namespace stablefs::integ
