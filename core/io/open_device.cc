#include "core/io/open_device.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <linux/major.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include <utility>

#include "core/base/checksum.h"
#include "core/base/format.h"
#include "core/base/log.h"
#include "core/base/unique_fd.h"
#include "core/io/host_lock.h"
#include "core/io/nbd_device.h"
#include "core/io/uring_device.h"

namespace stablefs {

bool is_nbd_uri(const std::string& target) {
  for (const char* scheme : {"nbd://", "nbds://", "nbd+unix://", "nbds+unix://"})
    if (target.rfind(scheme, 0) == 0) return true;
  return false;
}

namespace {

// The NBD export's lock on this host: a file in /run/lock named after the
// URI. An NBD server cannot be locked from a client, so this only keeps
// two stablefs processes on one machine apart (and only when they spell
// the URI alike); across machines the server must admit one client (see
// the README's "Network storage").
std::string nbd_lock_path(const std::string& uri) {
  char name[64];
  std::snprintf(name, sizeof(name), "stablefs-nbd-%016llx.lock",
                static_cast<unsigned long long>(xxh3(uri.data(), uri.size())));
  struct stat st;
  const char* dir = ::stat("/run/lock", &st) == 0 && S_ISDIR(st.st_mode) ? "/run/lock" : "/tmp";
  return std::string(dir) + "/" + name;
}

Result<std::unique_ptr<BlockDevice>> open_nbd(const std::string& uri, const OpenOptions& opts) {
  NbdDevice::Config cfg;
  cfg.uri = uri;
  cfg.read_only = opts.read_only;
  cfg.connections = opts.nbd_connections;
  // A server that admits one client at a time holds us in the handshake
  // while a daemon finishing its unmount is still connected.
  cfg.connect_timeout_ms = 10000 + opts.busy_wait_ms;
  if (opts.exclusive) {
    auto lock = HostLock::acquire(nbd_lock_path(uri), opts.read_only, opts.busy_wait_ms);
    if (!lock.ok()) return err(lock.error());
    cfg.lock = std::move(*lock);
  }
  std::string why;
  auto dev = NbdDevice::open(cfg, &why);
  if (!dev.ok()) {
    SFS_LOG("NBD %s: %s", uri.c_str(), why.c_str());
    return err(dev.error());
  }
  return std::unique_ptr<BlockDevice>(std::move(*dev));
}

Result<std::unique_ptr<BlockDevice>> make_device(UniqueFd& fd, const UringDevice::Config& cfg) {
  auto dev = UringDevice::create(fd.release(), cfg);
  if (!dev.ok()) return err(dev.error());
  return std::unique_ptr<BlockDevice>(std::move(*dev));
}

// Creates a new image of create_size bytes. EEXIST is not an error: the
// caller then opens whatever is there, as it would without create.
Status create_image(const std::string& path, uint64_t size) {
  if (size < kBlockSize) return err(EINVAL);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return errno == EEXIST ? Status::Ok() : Status(err(errno));
  UniqueFd guard(fd);
  if (::ftruncate(fd, off_t(size - size % kBlockSize)) != 0) {
    int e = errno;
    ::unlink(path.c_str());
    return err(e);
  }
  return Status::Ok();
}

Result<std::unique_ptr<BlockDevice>> open_image(const std::string& path, const OpenOptions& opts) {
  int mode = opts.read_only ? O_RDONLY : O_RDWR;
  bool direct = true;
  int fd = ::open(path.c_str(), mode | O_DIRECT | O_CLOEXEC);
  if (fd < 0 && errno == EINVAL) {
    // The host filesystem refuses O_DIRECT; buffered I/O still goes through
    // io_uring and flush still makes it durable.
    direct = false;
    fd = ::open(path.c_str(), mode | O_CLOEXEC);
  }
  if (fd < 0) return err(errno);
  UniqueFd guard(fd);

  struct stat st;
  if (::fstat(fd, &st) != 0) return err(errno);
  if (!S_ISREG(st.st_mode)) return err(ENOTBLK);  // replaced since stat()
  if (opts.exclusive) SFS_TRY(flock_with_deadline(fd, opts.read_only, opts.busy_wait_ms));
  UringDevice::Config cfg;
  cfg.block_count = uint64_t(st.st_size) / kBlockSize;
  cfg.sector_size = 512;
  cfg.read_only = opts.read_only;
  cfg.direct_io = direct;
  return make_device(guard, cfg);
}

// A loop device's backing file, locked as an image file is (flock): a
// daemon on /dev/loopN takes O_EXCL on the device and one on the file
// behind it flock on the file, so without this neither would see the other
// and both would write the same blocks. Null when the device is no loop
// device or its file cannot be opened here (deleted, or outside this mount
// namespace, where nothing here can open it by path either).
Result<std::shared_ptr<const UniqueFd>> lock_loop_backing_file(int dev_fd, dev_t rdev,
                                                               const OpenOptions& opts) {
  std::shared_ptr<const UniqueFd> none;
  if (major(rdev) != LOOP_MAJOR) return none;
  loop_info64 info{};
  if (::ioctl(dev_fd, LOOP_GET_STATUS64, &info) != 0) return none;  // no file bound
  std::ifstream sys("/sys/dev/block/" + std::to_string(major(rdev)) + ":" +
                    std::to_string(minor(rdev)) + "/loop/backing_file");
  std::string file_path;
  if (!std::getline(sys, file_path) || file_path.empty()) return none;
  UniqueFd file(::open(file_path.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st;
  if (!file.ok() || ::fstat(file.get(), &st) != 0 || !S_ISREG(st.st_mode)) return none;
  // lo_device is the kernel's new_encode_dev of the file's device.
  const uint64_t d = info.lo_device;
  const unsigned lo_major = unsigned((d & 0xfff00) >> 8);
  const unsigned lo_minor = unsigned((d & 0xff) | ((d >> 12) & 0xfff00));
  if (st.st_ino != info.lo_inode || major(st.st_dev) != lo_major || minor(st.st_dev) != lo_minor)
    return none;  // the path names another file now
  SFS_TRY(flock_with_deadline(file.get(), opts.read_only, opts.busy_wait_ms));
  return std::make_shared<const UniqueFd>(std::move(file));
}

Result<std::unique_ptr<BlockDevice>> open_block_device(const std::string& path,
                                                       const OpenOptions& opts) {
  int flags = (opts.read_only ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC;
  // On a block device O_EXCL without O_CREAT means "fail with EBUSY if it
  // is mounted or opened exclusively by anyone else".
  if (opts.exclusive) flags |= O_EXCL;
  int fd = ::open(path.c_str(), flags);
  if (fd < 0) return err(errno);
  UniqueFd guard(fd);

  struct stat st;
  if (::fstat(fd, &st) != 0) return err(errno);
  if (!S_ISBLK(st.st_mode)) return err(ENOTBLK);
  uint64_t bytes = 0;
  int sector = 0;
  if (::ioctl(fd, BLKGETSIZE64, &bytes) != 0) return err(errno);
  if (::ioctl(fd, BLKSSZGET, &sector) != 0) return err(errno);
  // Requests are whole 4 KiB blocks at 4 KiB offsets, so any sector size up
  // to the block size works; a larger one could not be addressed.
  if (sector <= 0 || sector > int(kBlockSize) || kBlockSize % unsigned(sector) != 0)
    return err(EINVAL);
  UringDevice::Config cfg;
  if (opts.exclusive) {
    auto lock = lock_loop_backing_file(fd, st.st_rdev, opts);
    if (!lock.ok()) return err(lock.error());
    cfg.companion_lock = std::move(*lock);
  }
  cfg.block_count = bytes / kBlockSize;
  cfg.sector_size = uint32_t(sector);
  cfg.read_only = opts.read_only;
  cfg.direct_io = true;
  return make_device(guard, cfg);
}

}  // namespace

Result<std::unique_ptr<BlockDevice>> open_device(const std::string& path,
                                                 const OpenOptions& opts) {
  if (is_nbd_uri(path)) return open_nbd(path, opts);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT || !opts.create || opts.read_only) return err(errno);
    SFS_TRY(create_image(path, opts.create_size));
    if (::stat(path.c_str(), &st) != 0) return err(errno);
  }
  if (S_ISREG(st.st_mode)) return open_image(path, opts);
  if (S_ISBLK(st.st_mode)) return open_block_device(path, opts);
  // Directories, character devices, fifos: never opened, since opening some
  // of them has side effects.
  return err(ENOTBLK);
}

namespace {

// The file behind loop device `path` as the kernel names it, or "" when
// `path` is no bound loop device.
std::string loop_backing_file(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISBLK(st.st_mode) || major(st.st_rdev) != LOOP_MAJOR)
    return "";
  std::ifstream sys("/sys/dev/block/" + std::to_string(major(st.st_rdev)) + ":" +
                    std::to_string(minor(st.st_rdev)) + "/loop/backing_file");
  std::string file;
  std::getline(sys, file);
  return file;
}

}  // namespace

bool is_mount_source(const std::string& source) {
  // A loop device and the file behind it are one image (lock_loop_backing_file).
  const std::string behind_source = loop_backing_file(source);
  std::ifstream mi("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mi, line)) {
    // ... mountpoint opts [optional fields] - fstype source superopts
    auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream f(line.substr(dash + 3));
    std::string fstype, src;
    if (!(f >> fstype >> src)) continue;
    if (src == source || (!behind_source.empty() && src == behind_source)) return true;
    if (src.rfind("/dev/loop", 0) == 0 && loop_backing_file(src) == source) return true;
  }
  return false;
}

}  // namespace stablefs
