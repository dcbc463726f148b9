// Runs tests/vis/browser_check.js (headless Chromium from file://, network blocked) on a page and
// returns what it saw. Shared by the tests of every HTML page saelab writes.
#pragma once
#include <string>

#include "saelab/core/json.h"

namespace saelab::test {

struct BrowserOptions {
  std::string eval;        // JS expression whose value comes back in result["value"]
  std::string wait;        // JS expression to wait for (truthy) before evaluating
  std::string screenshot;  // PNG path, or "" for none
  bool full_page = false;
  int width = 1280, height = 900;
};

struct BrowserResult {
  int rc = -1;      // 0: the page was opened and result holds what was seen
  std::string err;  // browser_check.js's one-line message when rc != 0
  json result;      // {"requests", "console_errors", "page_errors", "value", "load_ms", ...}
};

BrowserResult open_in_browser(const std::string& page, const BrowserOptions& opts = {});

}  // namespace saelab::test
