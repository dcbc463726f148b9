// vis/html.h: escaping, JSON embedded in a page, the assets compiled into the binary.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "saelab/core/error.h"
#include "saelab/vis/html.h"
#include "test_paths.h"
#include "test_util.h"
#include "vis/browser.h"

namespace saelab {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(Html, EscapesTheFiveSpecialCharacters) {
  EXPECT_EQ(vis::html_escape("a<b>&\"c'd"), "a&lt;b&gt;&amp;&quot;c&#39;d");
  EXPECT_EQ(vis::html_escape("plain text"), "plain text");
}

TEST(Html, JsonForScriptHasNoAngleBracketAndParsesBack) {
  json j = {{"k", "</script><!-- <b>"}, {"nested", {{"x", json::array({1, 2.5, "</SCRIPT>"})}}}};
  const std::string s = vis::json_for_script(j);
  EXPECT_EQ(s.find('<'), std::string::npos) << s;
  EXPECT_EQ(json::parse(s), j);
  // JSON has no NaN: a non-finite number is null.
  EXPECT_EQ(json::parse(vis::json_for_script(json{{"v", std::nan("")}}))["v"], nullptr);
}

TEST(Html, ScriptAndStyleTagsRefuseTextThatWouldCloseThem) {
  EXPECT_THROW(vis::script_tag("var s = '</ScRiPt>';"), Error);
  EXPECT_THROW(vis::style_tag("a{} </style>"), Error);
  EXPECT_EQ(vis::script_tag("var a = 1 < 2;"), "<script>var a = 1 < 2;</script>\n");
}

TEST(Html, EmbeddedAssetsAreTheVendoredFilesByteForByte) {
  const std::string dir = std::string(SAELAB_SOURCE_DIR) + "/third_party/uplot/";
  for (const char* name : {"uPlot.iife.min.js", "uPlot.min.css"}) {
    const std::string on_disk = slurp(dir + name);
    ASSERT_FALSE(on_disk.empty()) << dir << name;
    EXPECT_EQ(std::string(vis::asset(std::string("uplot/") + name)), on_disk) << name;
  }
  try {
    vis::asset("no/such.js");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no/such.js"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("uplot/uPlot.iife.min.js"), std::string::npos);
  }
}

// In a real browser from file://: the inlined library runs, the embedded JSON reads back intact
// (even with "</script>" inside a string) and the page makes no request.
TEST(Html, PageWithInlinedUplotAndDataRunsOfflineInChromium) {
  test::TempDir tmp;
  json data = {{"title", "</script><script>window.injected = 1</script>"}, {"xs", {1, 2, 3}}};
  std::string page = "<!doctype html><html><head><meta charset=\"utf-8\">" +
                     vis::style_tag(vis::asset("uplot/uPlot.min.css")) + "</head><body>" +
                     vis::json_script_tag("data", data) +
                     vis::script_tag(vis::asset("uplot/uPlot.iife.min.js")) +
                     vis::script_tag(
                         "var d = JSON.parse(document.getElementById('data').textContent);"
                         "window.result = JSON.stringify({title: d.title, n: d.xs.length,"
                         " uplot: typeof uPlot, injected: window.injected || 0});") +
                     "</body></html>";
  test::write_text(tmp / "page.html", page);
  test::BrowserOptions o;
  o.eval = "window.result";
  auto r = test::open_in_browser(tmp / "page.html", o);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.result["requests"], json::array());
  EXPECT_EQ(r.result["console_errors"], json::array());
  EXPECT_EQ(r.result["page_errors"], json::array());
  json v = json::parse(r.result["value"].get<std::string>());
  EXPECT_EQ(v["title"], data["title"]);
  EXPECT_EQ(v["n"], 3);
  EXPECT_EQ(v["uplot"], "function");
  EXPECT_EQ(v["injected"], 0);
}

// The harness itself must see what it is there to catch.
TEST(Html, BrowserCheckReportsRequestsAndConsoleErrors) {
  test::TempDir tmp;
  test::write_text(
      tmp / "bad.html",
      "<!doctype html><html><body><img src=\"https://example.invalid/x.png\">"
      "<script>console.error('deliberate'); undefinedFunction();</script></body></html>");
  auto r = test::open_in_browser(tmp / "bad.html");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.result["requests"], json::array({"https://example.invalid/x.png"}));
  bool saw = false;
  for (const auto& e : r.result["console_errors"]) saw |= e.get<std::string>() == "deliberate";
  EXPECT_TRUE(saw) << r.result.dump();
  ASSERT_EQ(r.result["page_errors"].size(), 1u);
  EXPECT_NE(r.result["page_errors"][0].get<std::string>().find("undefinedFunction"),
            std::string::npos);
}

}  // namespace
}  // namespace saelab
