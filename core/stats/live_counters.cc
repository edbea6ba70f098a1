#include "core/stats/live_counters.h"

#include <signal.h>
#include <unistd.h>

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cstdio>
#include <cstring>
#include <new>

#include "core/base/checksum.h"

namespace bip = boost::interprocess;

namespace stablefs {

std::string counters_segment_name(const std::string& mountpoint) {
  std::string name = "stablefs";
  for (char c : mountpoint) name.push_back(c == '/' ? '.' : c);
  if (name.size() > 200) {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx",
                  (unsigned long long)xxh3(mountpoint.data(), mountpoint.size()));
    name = "stablefs.h" + std::string(hex);
  }
  return name;
}

struct CountersSegment::Impl {
  std::string name;
  bip::shared_memory_object shm;
  // The LiveCounters constructed in the mapping; its deleter destroys the
  // object and then unmaps (when the last holder lets go).
  std::shared_ptr<LiveCounters> counters;
};

CountersSegment::CountersSegment(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)), counters_(impl_->counters) {
  std::lock_guard lk(published_detail::mu);
  published_detail::counters = counters_;
}

CountersSegment::~CountersSegment() {
  {
    std::lock_guard lk(published_detail::mu);
    if (published_detail::counters.lock() == counters_) published_detail::counters.reset();
  }
  bip::shared_memory_object::remove(impl_->name.c_str());
}

Result<std::unique_ptr<CountersSegment>> CountersSegment::create(const std::string& mountpoint,
                                                                 const std::string& source,
                                                                 std::string* note) {
  std::string name = counters_segment_name(mountpoint);
  try {
    // A segment left behind by a crashed daemon is replaced, never reused:
    // its counters belong to a mount that no longer exists.
    try {
      bip::shared_memory_object old(bip::open_only, name.c_str(), bip::read_only);
      bip::mapped_region r(old, bip::read_only);
      if (r.get_size() >= sizeof(int64_t) * 2 && note) {
        auto* c = static_cast<const LiveCounters*>(r.get_address());
        int64_t pid = r.get_size() >= sizeof(LiveCounters) ? c->pid : 0;
        bool alive = pid > 0 && kill(pid_t(pid), 0) == 0;
        *note = "replacing a stale counters segment /dev/shm/" + name + " (pid " +
                std::to_string(pid) + (alive ? ", still running" : ", gone") + ")";
      }
      bip::shared_memory_object::remove(name.c_str());
    } catch (const bip::interprocess_exception&) {
      // none: the normal case
    }
    auto impl = std::make_unique<Impl>();
    impl->name = name;
    impl->shm = bip::shared_memory_object(bip::create_only, name.c_str(), bip::read_write);
    impl->shm.truncate(sizeof(LiveCounters));
    auto region = std::make_shared<bip::mapped_region>(impl->shm, bip::read_write);
    auto* c = new (region->get_address()) LiveCounters();
    impl->counters = std::shared_ptr<LiveCounters>(
        c, [region](LiveCounters* p) { p->~LiveCounters(); });
    c->pid = getpid();
    std::snprintf(c->mountpoint, sizeof c->mountpoint, "%s", mountpoint.c_str());
    std::snprintf(c->source, sizeof c->source, "%s", source.c_str());
    return std::unique_ptr<CountersSegment>(new CountersSegment(std::move(impl)));
  } catch (const bip::interprocess_exception& e) {
    if (note) *note = std::string("cannot create the counters segment: ") + e.what();
    return err(EIO);
  }
}

struct CountersView::Impl {
  bip::shared_memory_object shm;
  bip::mapped_region region;
};

CountersView::CountersView(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
  counters_ = static_cast<const LiveCounters*>(impl_->region.get_address());
}

CountersView::~CountersView() = default;

Result<std::unique_ptr<CountersView>> CountersView::open(const std::string& mountpoint,
                                                         std::string* why) {
  std::string name = counters_segment_name(mountpoint);
  auto impl = std::make_unique<Impl>();
  try {
    impl->shm = bip::shared_memory_object(bip::open_only, name.c_str(), bip::read_only);
    impl->region = bip::mapped_region(impl->shm, bip::read_only);
  } catch (const bip::interprocess_exception&) {
    if (why) *why = "no stablefs counters for " + mountpoint + " (/dev/shm/" + name + ")";
    return err(ENOENT);
  }
  auto* c = static_cast<const LiveCounters*>(impl->region.get_address());
  if (impl->region.get_size() < 16 || c->magic != kCountersMagic) {
    if (why) *why = "/dev/shm/" + name + " is not a stablefs counters segment";
    return err(EPROTO);
  }
  if (c->version != kCountersVersion || c->size != sizeof(LiveCounters) ||
      impl->region.get_size() < sizeof(LiveCounters)) {
    if (why)
      *why = "counters layout version " + std::to_string(c->version) + " (size " +
             std::to_string(c->size) + ") does not match this tool's version " +
             std::to_string(kCountersVersion) + " (size " + std::to_string(sizeof(LiveCounters)) +
             "): use the stablefs-stat of the running daemon";
    return err(EPROTO);
  }
  return std::unique_ptr<CountersView>(new CountersView(std::move(impl)));
}

}  // namespace stablefs
