#include "tests/crash/durability_oracle.h"

namespace stablefs::crash {

void DurabilityOracle::close(const Name& name, size_t pos) {
  auto it = open_.find(name);
  if (it == open_.end()) return;
  exps_[it->second].until = pos;
  open_.erase(it);
  for (auto& [ino, names] : open_by_ino_) names.erase(name);
}

void DurabilityOracle::maybe_open(const Name& name, const std::string& path, uint64_t ino,
                                  size_t pos) {
  auto d = durable_names_.find(name);
  auto s = synced_.find(ino);
  if (d == durable_names_.end() || d->second != ino || s == synced_.end()) return;
  if (open_.count(name)) {
    // Same promise, renewed: only a changed content needs a new interval.
    const Expectation& e = exps_[open_[name]];
    if (e.content == s->second.content && e.symlink == s->second.symlink &&
        e.xattrs == s->second.xattrs)
      return;
    close(name, pos);
  }
  open_[name] = exps_.size();
  open_by_ino_[ino].insert(name);
  exps_.push_back(
      Expectation{path, s->second.content, s->second.symlink, s->second.xattrs, pos});
}

void DurabilityOracle::content_changing(uint64_t ino, size_t pos) {
  synced_.erase(ino);
  auto it = open_by_ino_.find(ino);
  if (it == open_by_ino_.end()) return;
  std::set<Name> names = it->second;
  for (const auto& n : names) close(n, pos);
}

void DurabilityOracle::name_changing(const Name& name, size_t pos) {
  close(name, pos);
  durable_names_.erase(name);
}

void DurabilityOracle::content_synced(uint64_t ino, const InodeImage& image,
                                      const std::vector<std::pair<Name, std::string>>& names,
                                      size_t pos) {
  synced_[ino] = image;
  for (const auto& [n, path] : names) maybe_open(n, path, ino, pos);
}

void DurabilityOracle::names_synced(const std::vector<std::pair<Name, std::string>>& names,
                                    const std::vector<uint64_t>& inos, size_t pos) {
  for (size_t i = 0; i < names.size(); i++) {
    durable_names_[names[i].first] = inos[i];
    maybe_open(names[i].first, names[i].second, inos[i], pos);
  }
}

}  // namespace stablefs::crash
