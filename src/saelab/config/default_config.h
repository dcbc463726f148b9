// The embedded default run config (configs/toy.toml), for `saelab train` with no CONFIG.
#pragma once

namespace saelab {

const char* default_toy_config_toml();

}  // namespace saelab
