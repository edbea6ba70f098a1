// The command-line conventions every stablefs tool shares: its exit codes,
// the usage error, and -h/--help and -V/--version. Each tool keeps its own
// usage text and option loop; this is only what they all wrote out again.
#pragma once

#include <cstdio>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "tools/version.h"

namespace stablefs {

// Exit codes of mkfs.stablefs, stablefs, stablefs-tune and stablefs-dump;
// fsck.stablefs has e2fsck's (tools/fsck.cc).
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

class ToolCli {
 public:
  // `libs`: the libraries --version names after the program.
  ToolCli(const char* program, void (*print_usage)(FILE*),
          std::initializer_list<LibraryVersion> libs, int usage_exit = kExitUsage)
      : program_(program), print_usage_(print_usage), libs_(libs), usage_exit_(usage_exit) {}

  // "PROGRAM: msg" and the usage on stderr, then exit with the usage code.
  [[noreturn]] void usage_error(const std::string& msg) const;
  static bool is_help_or_version(std::string_view arg) {
    return arg == "-h" || arg == "--help" || arg == "-V" || arg == "--version";
  }
  // Answers -h/--help (the usage on stdout) or -V/--version, and exits 0.
  [[noreturn]] void answer(std::string_view help_or_version) const;

 private:
  const char* program_;
  void (*print_usage_)(FILE*);
  std::vector<LibraryVersion> libs_;
  int usage_exit_;
};

}  // namespace stablefs
