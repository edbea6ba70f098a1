#include "tools/version.h"

#include <xxhash.h>

#include <boost/version.hpp>

#ifndef STABLEFS_VERSION
#error "STABLEFS_VERSION must come from CMake (tools/CMakeLists.txt)"
#endif
#ifndef STABLEFS_URING_BUILD_VERSION
#error "STABLEFS_URING_BUILD_VERSION must come from CMake (tools/CMakeLists.txt)"
#endif

namespace stablefs {

const char* project_version() { return STABLEFS_VERSION; }

LibraryVersion xxhash_version() {
  // XXH_versionNumber() is MAJOR*10000 + MINOR*100 + RELEASE.
  unsigned v = XXH_versionNumber();
  return {"xxHash", std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." +
                        std::to_string(v % 100)};
}

LibraryVersion uring_version() {
  return {"liburing", std::string(STABLEFS_URING_BUILD_VERSION) + " (built against)"};
}

LibraryVersion boost_version() {
  return {"Boost.Interprocess", std::to_string(BOOST_VERSION / 100000) + "." +
                                    std::to_string(BOOST_VERSION / 100 % 1000) + "." +
                                    std::to_string(BOOST_VERSION % 100) + " (header-only)"};
}

void print_version(FILE* out, const char* program, std::initializer_list<LibraryVersion> libs) {
  print_version(out, program, std::vector<LibraryVersion>(libs));
}

void print_version(FILE* out, const char* program, const std::vector<LibraryVersion>& libs) {
  std::fprintf(out, "%s (stablefs) %s\n", program, project_version());
  for (const LibraryVersion& l : libs)
    std::fprintf(out, "  %s %s\n", l.name.c_str(), l.version.c_str());
}

}  // namespace stablefs
