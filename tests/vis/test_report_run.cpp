// `saelab report RUN_DIR` on a real toy run: every series charted with the file's counts, the
// density histogram recounted from the final SAE, the doctor's findings, the page in Chromium.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include "saelab/core/safetensors.h"
#include "test_paths.h"
#include "test_util.h"
#include "vis/browser.h"
#include "vis/report_fixture.h"

namespace saelab {
namespace {

namespace fs = std::filesystem;

json report_json(const std::string& dir, const std::string& extra = "") {
  auto r = test::run_saelab("report " + test::shell_quote(dir) + " --json " + extra);
  EXPECT_EQ(r.rc, 0) << r.err;
  return json::parse(r.out);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::set<std::string> data_chart_keys(const std::string& html) {
  std::set<std::string> keys;
  std::regex re("data-chart=\"([^\"]+)\"");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), re); it != std::sregex_iterator();
       ++it)
    keys.insert((*it)[1].str());
  return keys;
}

TEST(ReportRun, EveryMetricHasItsChartWithTheFilesCount) {
  test::TempDir tmp;
  const std::string run = tmp / "run";
  test::copy_dir(test::cached_toy_run(), run);
  const auto counts = test::count_jsonl(run + "/metrics.jsonl");
  ASSERT_GT(counts.finite.size(), 8u);
  json j = report_json(run);
  EXPECT_EQ(j["kind"], "run");
  EXPECT_EQ(j["report"], run + "/report.html");
  std::map<std::string, json> charts;
  for (const auto& c : j["charts"]) charts[c["key"].get<std::string>()] = c;
  for (const auto& [key, n] : counts.finite) {
    ASSERT_TRUE(charts.count(key)) << key;
    EXPECT_EQ(charts[key]["points"], n) << key;
    EXPECT_EQ(charts[key]["drawn"], n) << key;  // 40 log steps: nothing to downsample
  }
  EXPECT_EQ(
      charts.size(), counts.finite.size() + [&] {
        size_t only_null = 0;
        for (const auto& k : counts.nulls) only_null += !counts.finite.count(k);
        return only_null;
      }());
  const std::string html = slurp(run + "/report.html");
  EXPECT_EQ(j["bytes"], html.size());
  auto keys = data_chart_keys(html);
  for (const auto& [key, n] : counts.finite) EXPECT_TRUE(keys.count(key)) << key;
  EXPECT_TRUE(keys.count("plots/feature_density_line_chart"));
}

// The histogram of the final SAE, recounted here from final/sparsity.safetensors: 50 bins of
// width 0.2 over [-10, 0], the last bin closed; dead = exactly -10 (stored as float32).
struct Recount {
  std::vector<int64_t> counts = std::vector<int64_t>(50, 0);
  int64_t dead = 0, dense = 0, n = 0;
};
Recount recount(const std::string& sparsity_file) {
  at::Tensor v = SafetensorsFile(sparsity_file).tensor("sparsity").to(at::kDouble).contiguous();
  Recount r;
  r.n = v.numel();
  for (int64_t i = 0; i < v.numel(); ++i) {
    const double x = v.data_ptr<double>()[i];
    int64_t b = static_cast<int64_t>(std::floor((x + 10.0) / 0.2 + 1e-9));
    r.counts[std::clamp<int64_t>(b, 0, 49)]++;
    r.dead += x <= -10.0 + 1e-6;
    r.dense += x > -2.0;
  }
  return r;
}

TEST(ReportRun, DensityHistogramMatchesTheFinalSae) {
  const std::string run = test::cached_toy_run();
  test::TempDir tmp;
  json j = report_json(run, "--out " + test::shell_quote(tmp / "r.html"));
  const Recount want = recount(run + "/final/sparsity.safetensors");
  const json& d = j["density"];
  ASSERT_TRUE(d.is_object()) << j.dump();
  EXPECT_EQ(d["counts"], json(want.counts));
  EXPECT_EQ(d["bin_edges"].size(), 51u);
  EXPECT_EQ(d["dead"], want.dead);
  EXPECT_EQ(d["dense"], want.dense);
  EXPECT_EQ(d["d_sae"], want.n);
  // Every logged window (300 steps, windows of 50: six) and the final SAE on the slider.
  EXPECT_EQ(test::count_jsonl(run + "/density.jsonl").lines, 6);
  EXPECT_EQ(d["snapshots"], 7);
}

// density.jsonl holds one histogram per feature-sampling window. A checkpoint written at a window's
// end stores that window's log10 densities (sparsity.safetensors), recounted here.
TEST(ReportRun, EachWindowsHistogramMatchesTheCheckpointAtItsEnd) {
  const std::string run = test::cached_toy_run();
  std::map<int64_t, json> windows;
  std::ifstream in(run + "/density.jsonl");
  for (std::string line; std::getline(in, line);) {
    json w = json::parse(line);
    windows[w["n_training_tokens"].get<int64_t>()] = w;
    EXPECT_EQ(w["n_training_tokens"].get<int64_t>() % (50 * 1024), 0) << line;
    EXPECT_EQ(w["window_tokens"], 50 * 1024) << line;
  }
  int compared = 0;
  for (const auto& e : fs::directory_iterator(run + "/checkpoints")) {
    const int64_t tokens = std::stoll(e.path().filename().string());
    ASSERT_TRUE(windows.count(tokens)) << "no window ends at checkpoint " << tokens;
    const Recount want = recount(e.path().string() + "/sparsity.safetensors");
    const json& w = windows[tokens];
    EXPECT_EQ(w["counts"], json(want.counts)) << tokens;
    EXPECT_EQ(w["dead"], want.dead) << tokens;
    EXPECT_EQ(w["dense"], want.dense) << tokens;
    EXPECT_EQ(w["d_sae"], want.n) << tokens;
    ++compared;
  }
  EXPECT_EQ(compared, 2);
}

TEST(ReportRun, FindingsAreTheDoctorsAndShownOnThePage) {
  const std::string run = test::cached_toy_run();
  test::TempDir tmp;
  json j = report_json(run, "--out " + test::shell_quote(tmp / "r.html"));
  auto doc = test::run_saelab("doctor " + test::shell_quote(run) + " --json");
  ASSERT_EQ(doc.rc, 0) << doc.err;
  json codes = json::array();
  const json doctor = json::parse(doc.out);
  for (const auto& f : doctor["findings"]) codes.push_back(f["code"]);
  EXPECT_EQ(j["findings"], codes);
  const std::string html = slurp(tmp / "r.html");
  for (const auto& c : codes)
    EXPECT_NE(html.find("data-finding=\"" + c.get<std::string>() + "\""), std::string::npos);
  if (codes.empty()) EXPECT_NE(html.find("no findings"), std::string::npos);
}

// Opened from file:// in headless Chromium: no request, no console error, a uPlot chart with the
// drawn points for every metric, the density histogram, render time.
TEST(ReportRun, PageRendersOfflineInChromium) {
  const std::string run = test::cached_toy_run();
  test::TempDir tmp;
  json j = report_json(run, "--out " + test::shell_quote(tmp / "r.html"));
  test::BrowserOptions o;
  o.wait = "document.body.getAttribute('data-rendered') === '1'";
  o.eval =
      "JSON.stringify({dom: Array.from(document.querySelectorAll('[data-chart]')).map(e => "
      "e.getAttribute('data-chart')), drawn: Object.fromEntries(Object.entries(saelabCharts).map("
      "([k, u]) => [k, u.data[0].length])), ms: saelabReport.renderMs, slider: "
      "document.querySelector('#density input[type=range]').max})";
  o.screenshot = tmp / "run.png";
  o.height = 1500;  // the top of the page, as docs/report.md shows it
  auto r = test::open_in_browser(tmp / "r.html", o);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.result["requests"], json::array());
  EXPECT_EQ(r.result["console_errors"], json::array());
  EXPECT_EQ(r.result["page_errors"], json::array());
  json v = json::parse(r.result["value"].get<std::string>());
  std::set<std::string> dom(v["dom"].begin(), v["dom"].end());
  for (const auto& c : j["charts"]) {
    const std::string key = c["key"];
    EXPECT_TRUE(dom.count(key)) << key;
    if (c["drawn"].get<int64_t>() > 0) EXPECT_EQ(v["drawn"][key], c["drawn"]) << key;
  }
  EXPECT_EQ(v["drawn"]["plots/feature_density_line_chart"], 50);
  EXPECT_EQ(v["slider"], "6");  // six windows and the final SAE
  EXPECT_LT(v["ms"].get<double>(), 2000.0);
  EXPECT_GT(fs::file_size(tmp / "run.png"), 10000u);
  if (const char* docs = std::getenv("SAELAB_UPDATE_DOCS_SCREENSHOTS"))
    fs::copy_file(tmp / "run.png", std::string(SAELAB_SOURCE_DIR) + "/docs/report-run.png",
                  fs::copy_options::overwrite_existing);
}

// A run that failed: its error and a NaN logged as null are shown, with the curves before them.
TEST(ReportRun, FailedRunStillGetsAReport) {
  test::TempDir tmp;
  const std::string run = tmp / "run";
  test::copy_dir(test::cached_toy_run(), run);
  const std::string message = "loss is nan at step 201; last good checkpoint: <checkpoints/x>";
  test::write_text(run + "/error.txt", message + "\n");
  {
    std::ofstream m(run + "/metrics.jsonl", std::ios::app);
    m << "{\"step\": 201, \"losses/overall_loss\": null, \"metrics/l0\": 3.5}\n";
  }
  auto r = test::run_saelab("report " + test::shell_quote(run) + " --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["errors"], json::array({message}));
  const std::string html = slurp(run + "/report.html");
  EXPECT_NE(html.find("id=\"run-error\""), std::string::npos);
  // The message is on the page, escaped.
  EXPECT_NE(html.find("last good checkpoint: &lt;checkpoints/x&gt;"), std::string::npos);
  EXPECT_NE(html.find("id=\"run-nonfinite\""), std::string::npos);
  const auto counts = test::count_jsonl(run + "/metrics.jsonl");
  for (const auto& c : j["charts"])
    EXPECT_EQ(c["points"], counts.finite.count(c["key"]) ? counts.finite.at(c["key"]) : 0);
  auto b = test::open_in_browser(
      run + "/report.html", {"saelabReport.charts", "document.body.getAttribute('data-rendered')"});
  ASSERT_EQ(b.rc, 0) << b.err;
  EXPECT_EQ(b.result["page_errors"], json::array());
  EXPECT_EQ(b.result["console_errors"], json::array());
}

// A run killed while writing a line: that line is left out and the page says so.
TEST(ReportRun, TornLastLineIsSkippedAndSaid) {
  test::TempDir tmp;
  const std::string run = tmp / "run";
  test::copy_dir(test::cached_toy_run(), run);
  const auto before = test::count_jsonl(run + "/metrics.jsonl");
  {
    std::ofstream m(run + "/metrics.jsonl", std::ios::app);
    m << "{\"step\": 205, \"losses/overall_loss\": 0.1";  // killed mid-write
  }
  json j = report_json(run);
  for (const auto& c : j["charts"])
    if (before.finite.count(c["key"])) EXPECT_EQ(c["points"], before.finite.at(c["key"]));
  EXPECT_NE(slurp(run + "/report.html").find("incomplete line"), std::string::npos);
}

void expect_one_line_error(const test::CommandResult& r, const std::string& names) {
  EXPECT_NE(r.rc, 0);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind("saelab: error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(names), std::string::npos) << r.err;
}

TEST(ReportRun, BadInputIsOneLineAndNonZeroExit) {
  test::TempDir tmp;
  expect_one_line_error(test::run_saelab("report " + test::shell_quote(tmp / "nope")),
                        tmp / "nope");
  const std::string run = tmp / "run";
  test::copy_dir(test::cached_toy_run(), run);
  fs::remove(run + "/report.html");
  // A malformed line in the middle: the file and line are named, no page is written.
  std::string text = slurp(run + "/metrics.jsonl");
  text.insert(text.find('\n') + 1, "{not json}\n");
  test::write_text(run + "/metrics.jsonl", text);
  expect_one_line_error(test::run_saelab("report " + test::shell_quote(run)), "metrics.jsonl:2");
  EXPECT_FALSE(fs::exists(run + "/report.html"));
  fs::remove(run + "/metrics.jsonl");
  expect_one_line_error(test::run_saelab("report " + test::shell_quote(run)), "metrics.jsonl");
  // density.jsonl with a window whose counts do not add up to d_sae, then one that is not JSON.
  const std::string run2 = tmp / "run2";
  test::copy_dir(test::cached_toy_run(), run2);
  std::string density = slurp(run2 + "/density.jsonl");
  json first = json::parse(density.substr(0, density.find('\n')));
  first["counts"][0] = first["counts"][0].get<int64_t>() + 1;
  test::write_text(run2 + "/density.jsonl",
                   first.dump() + "\n" + density.substr(density.find('\n') + 1));
  expect_one_line_error(test::run_saelab("report " + test::shell_quote(run2)), "density.jsonl:1");
  test::write_text(run2 + "/density.jsonl", "[1, 2]\n" + density);
  expect_one_line_error(test::run_saelab("report " + test::shell_quote(run2)), "density.jsonl:1");
  // An --out in a folder that does not exist.
  expect_one_line_error(test::run_saelab("report " + test::shell_quote(test::cached_toy_run()) +
                                         " --out " + test::shell_quote(tmp / "no/such/dir/r.html")),
                        "no/such/dir");
}

// --open hands the page to xdg-open (here a stand-in that records its argument); where there is
// none, the page is still written and stderr says where it is.
TEST(ReportRun, OpenHandsThePageToXdgOpen) {
  test::TempDir tmp;
  fs::create_directories(tmp / "bin");
  test::write_text(tmp / "bin/xdg-open",
                   "#!/bin/sh\nprintf '%s' \"$1\" > " + test::shell_quote(tmp / "opened") + "\n");
  fs::permissions(tmp / "bin/xdg-open", fs::perms::owner_all);
  const std::string page = tmp / "r.html";
  auto r = test::run_command("PATH=" + test::shell_quote(tmp / "bin") + ":/usr/bin:/bin " +
                             SAELAB_EXE + " report " + test::shell_quote(test::cached_toy_run()) +
                             " --open --out " + test::shell_quote(page));
  EXPECT_EQ(r.rc, 0) << r.err;
  for (int i = 0; i < 100 && !fs::exists(tmp / "opened"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(slurp(tmp / "opened"), page);
  fs::remove(page);
  auto none = test::run_command("PATH=" + test::shell_quote(tmp / "nothing") + " " + SAELAB_EXE +
                                " report " + test::shell_quote(test::cached_toy_run()) +
                                " --open --out " + test::shell_quote(page));
  EXPECT_EQ(none.rc, 0) << none.err;
  EXPECT_TRUE(fs::exists(page));
  EXPECT_NE(none.err.find("no xdg-open here; open " + page), std::string::npos) << none.err;
}

// `saelab train` writes the report at the end and prints its path, with its own wall time (not
// the file-time estimate); --no-report skips it.
TEST(ReportRun, TrainWritesTheReportUnlessNoReport) {
  test::TempDir tmp;
  const std::string sets =
      " --set training_tokens=10240 --set lr_decay_steps=0 --set lr_warm_up_steps=0 "
      "--set l1_warm_up_steps=0 --set l0_warm_up_steps=0 --set n_checkpoints=0 "
      "--set wandb_log_frequency=2";
  auto r = test::run_saelab("train --run-dir " + test::shell_quote(tmp / "a") + sets);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("report: " + tmp / "a" + "/report.html\n"), std::string::npos) << r.out;
  const std::string html = slurp(tmp / "a/report.html");
  EXPECT_NE(html.find("data-chart=\"losses/mse_loss\""), std::string::npos);
  EXPECT_NE(html.find(">wall time<"), std::string::npos);
  EXPECT_EQ(html.find("wall time (from file times)"), std::string::npos);
  r = test::run_saelab("train --no-report --run-dir " + test::shell_quote(tmp / "b") + sets);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out.find("report:"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(tmp / "b/report.html"));
  EXPECT_TRUE(fs::exists(tmp / "b/metrics.jsonl"));
}

}  // namespace
}  // namespace saelab
