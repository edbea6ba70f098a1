// Helpers shared by wac's tests: run the built wac binary and parse its
// JSON report.
#pragma once

#include <boost/property_tree/json_parser.hpp>
#include <boost/property_tree/ptree.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tools/wac/subprocess.h"

namespace stablefs::wac::test {

inline CommandResult run_wac(std::vector<std::string> args, int timeout_s = 120) {
  args.insert(args.begin(), WAC_BIN);
  return run_command(args, timeout_s);
}

// Parses the last line that starts with '{' (wac prints one JSON object).
inline bool parse_json(const std::string& output, boost::property_tree::ptree* out,
                       std::string* why) {
  std::istringstream lines(output);
  std::string line, json;
  while (std::getline(lines, line))
    if (!line.empty() && line[0] == '{') json = line;
  if (json.empty()) {
    *why = "no JSON object in: " + output;
    return false;
  }
  std::istringstream in(json);
  try {
    boost::property_tree::read_json(in, *out);
  } catch (const std::exception& e) {
    *why = std::string("bad JSON: ") + e.what() + ": " + json;
    return false;
  }
  return true;
}

}  // namespace stablefs::wac::test
