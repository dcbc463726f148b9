// Sweep specs: a run config whose value for a key is a list of values (`l1_coefficient = [1, 2,
// 4, 8]`; a list of lists for a key whose value is itself a list, a list of tables for a table
// key) sweeps that key; several swept keys give their Cartesian product. Every member is resolved
// and validated before any work starts. Running a sweep is train/sweep.h's job.
#pragma once
#include <string>
#include <vector>

#include "saelab/config/runner_config.h"
#include "saelab/core/json.h"

namespace saelab {

struct SweepMember {
  std::string name;              // "l1_coefficient=2_lr=0.001": its run directory's name
  json values = json::object();  // swept key -> this member's value
  RunnerConfig cfg;              // resolved and validated
};

struct SweepSpec {
  std::vector<std::string> keys;     // the swept keys (file keys first, then --set keys)
  json values = json::object();      // key -> the list of values
  std::vector<SweepMember> members;  // the Cartesian product, the first key varying slowest
  std::string sweep_name;            // the run_name given, else "sweep_<key>_<key>"
  bool is_sweep() const { return !keys.empty(); }
};

// Reads a run config like load_runner_config, recognising sweep values. When nothing is swept the
// result has no keys and no members: load the config with load_runner_config (its errors apply).
// Errors (one line): a key that cannot be swept (names it and says why), an empty or repeated
// list, a combination that is not a valid config ("sweep member l1_coefficient=-1, lr=0.1: ..."),
// members that would need different activation streams.
SweepSpec load_sweep_config(const std::string& path, const std::vector<std::string>& sets = {});
SweepSpec load_sweep_config_text(const std::string& toml_text, const std::string& name,
                                 const std::vector<std::string>& sets = {});

// Why `key` cannot be swept ("" when it can): it changes the shared activation stream or names
// the sweep's directories.
std::string sweep_forbidden_reason(const std::string& key);

// The hooks a sweep's activation rows hold, in column-block order: each distinct hook_name of the
// members r, r + stride, r + 2·stride, ... (a rank's share of a sweep over ranks; stride 1: all),
// in member order. One name unless hook_name is swept.
std::vector<std::string> sweep_hook_names(const SweepSpec& spec, size_t first = 0,
                                          size_t stride = 1);

// The sweep of a sweep directory (its sweep.json and each member's config.toml, with `sets`
// applied to every member), for --resume.
SweepSpec load_sweep_dir(const std::string& sweep_dir, const std::vector<std::string>& sets = {});
bool is_sweep_dir(const std::string& dir);

}  // namespace saelab
