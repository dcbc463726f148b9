// An SAE's cfg.json (SaeConfig::from_json, both the flat v5 and the v6 layout). A config that
// loads must survive its own round trip: to_json() read back gives the same JSON.
#include <stdexcept>

#include "fuzz_target.h"
#include "saelab/core/json.h"
#include "saelab/sae/config.h"

SAELAB_FUZZ_TARGET(cfg_json) {
  std::string text(reinterpret_cast<const char*>(data), size);
  saelab::json j = saelab::parse_json(text, "cfg.json");
  saelab::SaeConfig cfg = saelab::SaeConfig::from_json(j, "cfg.json");
  saelab::json written = cfg.to_json();
  saelab::json again;
  try {
    again = saelab::SaeConfig::from_json(written, "written cfg.json").to_json();
  } catch (const saelab::Error& e) {
    throw std::logic_error(std::string("cfg.json that loaded does not load back: ") + e.what());
  }
  if (again != written) throw std::logic_error("cfg.json round trip changed: " + written.dump());
}
