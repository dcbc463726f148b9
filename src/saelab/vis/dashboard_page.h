// The self-contained HTML of `saelab vis`: the contract JSON re-encoded compactly (activations
// quantised to 1/255 of each feature's max, numbers to 4 significant digits, contexts as
// references into the prompts stored once), split into chunks that the page parses only when a
// card in them is opened, plus the dashboard's own JS/CSS (src/saelab/vis/assets/dashboard.*).
#pragma once
#include <string>

#include "saelab/core/json.h"

namespace saelab::vis {

// stats: the --json contract; page: DashboardData::page ("vocab", "prompts", "othello").
std::string feature_dashboard_html(const json& stats, const json& page, const std::string& title);

// view: build_prompt_view's result.
std::string prompt_view_html(const json& view, const std::string& title);

}  // namespace saelab::vis
