// Reproducer mode: the six scenarios of the 2011 stable-page patch series
// (v3 cover letter), on a mounted filesystem or, with --image, on scratch
// stablefs mounts for each stable_pages policy.
#pragma once

#include <string>
#include <vector>

#include "tools/wac/mount_driver.h"
#include "tools/wac/options.h"
#include "tools/wac/report.h"
#include "tools/wac/worker_pool.h"

namespace stablefs::wac {

struct Scenario {
  char name;
  std::string what;
  unsigned writers;
  unsigned mmappers;
  bool o_direct;
};

// A-F for N = o.scenario_workers, filtered by o.scenarios:
// A N write, B N mmap, C N/2 + N/2, D = C, E = A, F = B with O_DIRECT.
std::vector<Scenario> scenarios_for(const Options& o);

struct ScenarioResult {
  Scenario scenario;
  RunResult run;
  IntegrityObservation integrity;
  int final_fsync_errno = 0;  // the fsync that flushes the scenario's file before "after"
  std::string failure;
};

// One table: the scenarios run on one filesystem (one policy in --image).
struct PolicyResult {
  std::string policy;         // off/wait/shadow/bounce; "" on a user's mount
  std::string target;         // the directory the scenarios ran in
  std::string mount_options;  // --image: what the daemon got
  std::vector<ScenarioResult> scenarios;
  std::string failure;        // mkfs, mount or unmount trouble
  ScrubResult scrub;
  std::vector<std::string> daemon_lines;  // daemon log lines about integrity

  uint64_t integrity_errors() const;
  bool protected_policy() const { return policy == "wait" || policy == "shadow" || policy == "bounce"; }
  // This table's own exit status: 1 race reproduced, 0 none, 4 failed.
  int verdict() const;
};

// Runs the scenarios in `dir`, one fresh file each. On a terminal (stderr)
// each scenario shows a progress line, which names `policy` when it is not
// empty.
PolicyResult run_scenarios(const Options& o, const std::string& dir, const std::string& policy);

// The two entry points; both print the report and return the exit code.
int reproduce_on_directory(const Options& o);
int reproduce_with_image(const Options& o);

// Report (reproducer_report.cc).
void print_policy_table(FILE* out, const Options& o, const PolicyResult& p);
void print_comparison(FILE* out, const std::vector<PolicyResult>& runs);
void print_reproduce_json(FILE* out, const Options& o, const std::vector<PolicyResult>& runs,
                          int exit_code);
// The --image exit code from the per-policy results (see --help).
int combined_exit_code(const std::vector<PolicyResult>& runs);

}  // namespace stablefs::wac
