// `saelab report SWEEP_DIR` on a real two-member toy sweep: members overlaid, one scatter point
// per member, the Pareto front, each member's own report linked.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "saelab/core/error.h"
#include "saelab/vis/report_sweep.h"
#include "test_paths.h"
#include "test_util.h"
#include "vis/browser.h"
#include "vis/report_fixture.h"

namespace saelab {
namespace {

namespace fs = std::filesystem;

json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

TEST(ReportSweep, ParetoFrontOfHandMadePoints) {
  // (L0, EV): (10, .5) dominated by (8, .6); (20, .9) and (5, .4) are extremes; NaN is never on it.
  std::vector<double> l0 = {10, 8, 20, 5, std::nan(""), 8};
  std::vector<double> ev = {.5, .6, .9, .4, .99, .6};
  auto f = vis::pareto_front(l0, ev);
  EXPECT_EQ(f,
            (std::vector<bool>{false, true, true, true, false, true}));  // equal points both stay
  EXPECT_THROW(vis::pareto_front({1}, {}), Error);
}

TEST(ReportSweep, MembersScatterAndLinks) {
  test::TempDir tmp;
  const std::string sweep = tmp / "sweep";
  test::copy_dir(test::cached_toy_sweep(), sweep);
  const json sj = read_json(sweep + "/sweep.json");
  const size_t n = sj["members"].size();
  ASSERT_EQ(n, 2u);
  auto r = test::run_saelab("report " + test::shell_quote(sweep) + " --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["kind"], "sweep");
  ASSERT_EQ(j["members"].size(), n);
  // The figures of each final SAE are sweep.json's held-out summary.
  std::vector<double> l0, ev;
  for (size_t i = 0; i < n; ++i) {
    const json& m = j["members"][i];
    const json& s = sj["members"][i];
    EXPECT_EQ(m["name"], s["name"]);
    EXPECT_EQ(m["l0"], s["summary"]["metrics/l0"]);
    EXPECT_EQ(m["explained_variance"], s["summary"]["metrics/explained_variance"]);
    l0.push_back(s["summary"]["metrics/l0"]);
    ev.push_back(s["summary"]["metrics/explained_variance"]);
    EXPECT_TRUE(fs::exists(m["report"].get<std::string>())) << m.dump();
  }
  // Independent Pareto check for two points: both on the front unless one dominates the other.
  const bool first_dominates = l0[0] <= l0[1] && ev[0] >= ev[1] && (l0[0] < l0[1] || ev[0] > ev[1]);
  const bool second_dominates =
      l0[1] <= l0[0] && ev[1] >= ev[0] && (l0[1] < l0[0] || ev[1] > ev[0]);
  EXPECT_EQ(j["members"][0]["pareto"], !second_dominates);
  EXPECT_EQ(j["members"][1]["pareto"], !first_dominates);
  // The sweep's findings: every code `saelab doctor` gives any member, once each.
  std::set<std::string> codes;
  for (const auto& s : sj["members"]) {
    auto d = test::run_saelab(
        "doctor " + test::shell_quote(sweep + "/" + s["name"].get<std::string>()) + " --json");
    ASSERT_EQ(d.rc, 0) << d.err;
    const json doctor = json::parse(d.out);
    for (const auto& f : doctor["findings"]) codes.insert(f["code"].get<std::string>());
  }
  EXPECT_EQ(j["findings"], json(codes));
  std::map<std::string, int64_t> summed;
  for (const auto& s : sj["members"]) {
    const auto counts =
        test::count_jsonl(sweep + "/" + s["name"].get<std::string>() + "/metrics.jsonl");
    for (const auto& [k, c] : counts.finite) summed[k] += c;
  }
  ASSERT_EQ(j["charts"].size(), summed.size());
  for (const auto& c : j["charts"]) EXPECT_EQ(c["points"], summed[c["key"]]) << c.dump();

  test::BrowserOptions o;
  o.wait = "document.body.getAttribute('data-rendered') === '1'";
  o.eval =
      "JSON.stringify({points: saelabCharts['sweep/l0_vs_explained_variance'].data[1].filter(v "
      "=> v != null).length, series: saelabCharts['metrics/l0'].series.length - 1, links: "
      "Array.from(document.querySelectorAll('#members a')).map(a => a.getAttribute('href'))})";
  o.screenshot = tmp / "sweep.png";
  o.height = 1500;  // the top of the page, as docs/report.md shows it
  auto b = test::open_in_browser(sweep + "/report.html", o);
  ASSERT_EQ(b.rc, 0) << b.err;
  EXPECT_EQ(b.result["requests"], json::array());
  EXPECT_EQ(b.result["console_errors"], json::array());
  EXPECT_EQ(b.result["page_errors"], json::array());
  json v = json::parse(b.result["value"].get<std::string>());
  EXPECT_EQ(v["points"], n);
  EXPECT_EQ(v["series"], n);
  ASSERT_EQ(v["links"].size(), n);
  for (size_t i = 0; i < n; ++i) {
    EXPECT_EQ(v["links"][i], sj["members"][i]["name"].get<std::string>() + "/report.html");
    EXPECT_TRUE(fs::exists(sweep + "/" + v["links"][i].get<std::string>()));
  }
  if (std::getenv("SAELAB_UPDATE_DOCS_SCREENSHOTS"))
    fs::copy_file(tmp / "sweep.png", std::string(SAELAB_SOURCE_DIR) + "/docs/report-sweep.png",
                  fs::copy_options::overwrite_existing);
}

TEST(ReportSweep, BadSweepJsonIsOneLine) {
  test::TempDir tmp;
  test::write_text(tmp / "sweep.json", "{\"members\": 3}");
  auto r = test::run_saelab("report " + test::shell_quote(tmp.path()));
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.err.rfind("saelab: error: " + tmp.path() + "/sweep.json", 0), 0u) << r.err;
  test::write_text(tmp / "sweep.json", "{\"members\": [{\"name\": \"../escape\"}]}");
  r = test::run_saelab("report " + test::shell_quote(tmp.path()));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("not a directory name"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace saelab
