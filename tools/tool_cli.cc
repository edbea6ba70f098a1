#include "tools/tool_cli.h"

#include <cstdlib>

namespace stablefs {

void ToolCli::usage_error(const std::string& msg) const {
  std::fprintf(stderr, "%s: %s\n", program_, msg.c_str());
  print_usage_(stderr);
  std::exit(usage_exit_);
}

void ToolCli::answer(std::string_view help_or_version) const {
  if (help_or_version == "-h" || help_or_version == "--help") {
    print_usage_(stdout);
  } else {
    print_version(stdout, program_, libs_);
  }
  std::exit(0);
}

}  // namespace stablefs
