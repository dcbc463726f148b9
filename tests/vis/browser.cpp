// open_in_browser: the C++ side of tests/vis/browser_check.js.
#include "vis/browser.h"

#include "test_paths.h"
#include "test_util.h"

namespace saelab::test {

BrowserResult open_in_browser(const std::string& page, const BrowserOptions& o) {
  std::string cmd = "node " +
                    shell_quote(std::string(SAELAB_SOURCE_DIR) + "/tests/vis/browser_check.js") +
                    " " + shell_quote(page) + " --width " + std::to_string(o.width) + " --height " +
                    std::to_string(o.height);
  if (!o.eval.empty()) cmd += " --eval " + shell_quote(o.eval);
  if (!o.wait.empty()) cmd += " --wait " + shell_quote(o.wait);
  if (!o.screenshot.empty()) cmd += " --screenshot " + shell_quote(o.screenshot);
  if (o.full_page) cmd += " --full-page";
  CommandResult r = run_command(cmd);
  BrowserResult b;
  b.rc = r.rc;
  b.err = r.err;
  if (r.rc == 0) {
    b.result = json::parse(r.out, nullptr, false);
    if (b.result.is_discarded()) {
      b.rc = -1;
      b.err = "browser_check.js printed no JSON: " + r.out;
    }
  }
  return b;
}

}  // namespace saelab::test
