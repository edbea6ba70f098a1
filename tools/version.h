// `--version` for every stablefs binary: the project version and the
// libraries the binary runs on, so a bug report names what was really used.
#pragma once

#include <cstdio>
#include <initializer_list>
#include <string>
#include <vector>

namespace stablefs {

// The project version (CMakeLists.txt `project(... VERSION ...)`).
const char* project_version();

struct LibraryVersion {
  std::string name;
  std::string version;
};

// The version of the shared library loaded now, where the library can say
// (xxHash); else the version of the headers the binary was built against,
// marked as such (liburing 2.3 has no run-time query, Boost.Interprocess
// is header-only).
LibraryVersion xxhash_version();
LibraryVersion uring_version();
LibraryVersion boost_version();
// libfuse is asked by the caller (fuse_pkgversion()), so that only the
// binaries that link libfuse depend on it.

// Prints "PROGRAM (stablefs) VERSION" and one "  NAME VERSION" line per
// library.
void print_version(FILE* out, const char* program, std::initializer_list<LibraryVersion> libs);
void print_version(FILE* out, const char* program, const std::vector<LibraryVersion>& libs);

}  // namespace stablefs
