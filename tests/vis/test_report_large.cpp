// A 1,000,000-step run logged every 10 steps (100,000 metrics.jsonl lines): the page stays under
// 5 MB, renders in Chromium in under 2 s, and a one-step loss spike is still drawn.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "test_util.h"
#include "vis/browser.h"
#include "vis/report_fixture.h"

namespace saelab {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kSteps = 1000000, kEvery = 10, kSpikeStep = 500010;
constexpr double kSpike = 123.25;

void write_long_metrics(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  for (int64_t step = kEvery; step <= kSteps; step += kEvery) {
    const double t = double(step) / kSteps;
    const double wiggle = 0.02 * std::sin(double(step) * 0.37);
    const double mse = step == kSpikeStep ? kSpike : 2.0 * std::exp(-3 * t) + 0.1 + wiggle;
    std::fprintf(f,
                 "{\"step\": %lld, \"losses/overall_loss\": %.6g, \"losses/mse_loss\": %.6g, "
                 "\"losses/l1_loss\": %.6g, \"metrics/explained_variance\": %.6g, \"metrics/l0\": "
                 "%.6g, \"sparsity/mean_passes_since_fired\": %.6g, \"sparsity/dead_features\": "
                 "%d, \"details/current_learning_rate\": 0.0003, "
                 "\"details/current_l1_coefficient\": 5, \"details/n_training_tokens\": %lld}\n",
                 static_cast<long long>(step), mse + 0.5, mse, 0.5 + wiggle, 0.9 - 0.5 * (1 - t),
                 40 + 20 * std::exp(-5 * t) + 3 * wiggle, 10 + 100 * wiggle,
                 static_cast<int>(20 * t), static_cast<long long>(step * 1024));
    if (step % 2000 == 0)
      std::fprintf(f,
                   "{\"step\": %lld, \"metrics/mean_log10_feature_sparsity\": %.6g, "
                   "\"sparsity/below_1e-5\": 12, \"sparsity/below_1e-6\": 10, "
                   "\"sparsity/dense_features\": 3}\n",
                   static_cast<long long>(step), -3.5 + wiggle);
  }
  std::fclose(f);
}

TEST(ReportLarge, MillionStepRunIsSmallFastAndKeepsTheSpike) {
  test::TempDir tmp;
  const std::string run = tmp / "long";
  fs::create_directories(run);
  fs::copy_file(test::cached_toy_run() + "/config.toml", run + "/config.toml");
  fs::copy(test::cached_toy_run() + "/final", run + "/final", fs::copy_options::recursive);
  write_long_metrics(run + "/metrics.jsonl");
  const auto counts = test::count_jsonl(run + "/metrics.jsonl");
  ASSERT_EQ(counts.finite.at("losses/mse_loss"), kSteps / kEvery);

  const auto t0 = std::chrono::steady_clock::now();
  auto r = test::run_saelab("report " + test::shell_quote(run) + " --json");
  const double write_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.rc, 0) << r.err;
  json j = json::parse(r.out);
  for (const auto& c : j["charts"]) {
    EXPECT_EQ(c["points"], counts.finite.at(c["key"])) << c.dump();
    EXPECT_LE(c["drawn"].get<int64_t>(), 2002) << c.dump();
  }
  const auto bytes = fs::file_size(run + "/report.html");
  EXPECT_LT(bytes, 5u * 1000 * 1000);

  test::BrowserOptions o;
  o.wait = "document.body.getAttribute('data-rendered') === '1'";
  o.eval =
      "JSON.stringify({ms: saelabReport.renderMs, charts: saelabReport.charts, max: "
      "Math.max.apply(null, saelabCharts['losses/mse_loss'].data[1])})";
  auto b = test::open_in_browser(run + "/report.html", o);
  ASSERT_EQ(b.rc, 0) << b.err;
  EXPECT_EQ(b.result["requests"], json::array());
  EXPECT_EQ(b.result["console_errors"], json::array());
  json v = json::parse(b.result["value"].get<std::string>());
  EXPECT_LT(v["ms"].get<double>(), 2000.0);
  EXPECT_EQ(v["max"].get<double>(), kSpike);
  EXPECT_EQ(v["charts"].get<size_t>(), j["charts"].size() + 1);  // + the density histogram
  std::printf("1M-step report: %zu lines, written in %.2f s, %.2f MB, rendered in %.0f ms\n",
              static_cast<size_t>(counts.lines), write_s, double(bytes) / 1e6,
              v["ms"].get<double>());
}

}  // namespace
}  // namespace saelab
