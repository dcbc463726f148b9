// Run configs, TOML or JSON (an input starting with '{' is written as config.json, anything else
// as config.toml), through load_runner_config, the CLI's entry point. A config that loads must load
// again from its own to_toml() (the config.toml a run directory keeps).
#include <stdexcept>

#include "fuzz_target.h"
#include "saelab/config/runner_config.h"

SAELAB_FUZZ_TARGET(run_config) {
  size_t i = 0;
  while (i < size && (data[i] == ' ' || data[i] == '\n' || data[i] == '\t')) ++i;
  bool is_json = i < size && data[i] == '{';
  auto cfg = saelab::load_runner_config(
      saelab::fuzz::write_input(data, size, is_json ? "config.json" : "config.toml"));
  std::string toml = saelab::to_toml(cfg);
  try {
    (void)saelab::load_runner_config_text(toml, "written config.toml");
  } catch (const saelab::Error& e) {
    throw std::logic_error(std::string("run config that loaded does not load back: ") + e.what());
  }
}
