// metrics.jsonl lines, the resume truncation, MetricsLogger's two outputs, and the progress text.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "saelab/core/json.h"
#include "saelab/log/metrics_logger.h"
#include "saelab/log/progress.h"
#include "test_util.h"

using namespace saelab;
namespace fs = std::filesystem;

namespace {
std::vector<json> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<json> out;
  std::string line;
  while (std::getline(in, line)) out.push_back(json::parse(line));
  return out;
}
}  // namespace

TEST(MetricsJsonl, OneObjectPerLineWithStepAndNullForNonFinite) {
  test::TempDir dir;
  {
    MetricsJsonl m(dir / "metrics.jsonl");
    m.write(10, std::map<std::string, double>{{"losses/mse_loss", 0.5}, {"metrics/l0", 3.0}});
    m.write(20, std::map<std::string, double>{{"losses/mse_loss", NAN}, {"metrics/l0", INFINITY}});
    // Lines are flushed as written: readable before the writer closes.
    auto lines = read_lines(dir / "metrics.jsonl");
    ASSERT_EQ(lines.size(), 2u);
  }
  auto lines = read_lines(dir / "metrics.jsonl");
  EXPECT_EQ(lines[0]["step"], 10);
  EXPECT_EQ(lines[0]["losses/mse_loss"], 0.5);
  EXPECT_EQ(lines[0]["metrics/l0"], 3.0);
  EXPECT_TRUE(lines[1]["losses/mse_loss"].is_null());
  EXPECT_TRUE(lines[1]["metrics/l0"].is_null());
}

TEST(MetricsJsonl, ResumeDropsLinesAfterTheCheckpointAndATornLine) {
  test::TempDir dir;
  test::write_text(
      dir / "metrics.jsonl",
      "{\"step\": 10, \"a\": 1}\n{\"step\": 20, \"a\": 2}\n{\"step\": 30, \"a\": 3}\n{\"st");
  {
    MetricsJsonl m(dir / "metrics.jsonl", 20);
    m.write(30, std::map<std::string, double>{{"a", 4}});
  }
  auto lines = read_lines(dir / "metrics.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["step"], 10);
  EXPECT_EQ(lines[1]["step"], 20);
  EXPECT_EQ(lines[2]["step"], 30);
  EXPECT_EQ(lines[2]["a"], 4.0);
}

TEST(MetricsLogger, WritesJsonlAndOneEventFile) {
  test::TempDir dir;
  std::string run = dir / "run";
  {
    MetricsLogger log(run);
    log.log_scalars(5, {{"losses/overall_loss", 1.5}, {"sparsity/dead_features", 2}});
    log.log_histogram(5, "plots/feature_density_line_chart", std::vector<double>{-10, -3, -2});
    log.flush();
    EXPECT_EQ(log.jsonl_path(), run + "/metrics.jsonl");
  }
  auto lines = read_lines(run + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["step"], 5);
  EXPECT_EQ(lines[0]["losses/overall_loss"], 1.5);
  int events = 0;
  for (const auto& e : fs::directory_iterator(run))
    events += e.path().filename().string().rfind("events.out.tfevents.", 0) == 0;
  EXPECT_EQ(events, 1);
}

TEST(Progress, LineShowsTokensRateEtaAndStats) {
  ProgressStats st{0.0123, 12.34, 4};
  std::string line = format_progress_line(1'000'000, 2'000'000, 50'000, st, 10);
  EXPECT_EQ(line.substr(0, 13), "[#####.....] ");
  EXPECT_NE(line.find("1.00M/2.00M tok"), std::string::npos) << line;
  EXPECT_NE(line.find("50.0k tok/s"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA 0:20"), std::string::npos) << line;  // 1e6 tokens / 5e4 per s
  EXPECT_NE(line.find("mse 0.0123"), std::string::npos) << line;
  EXPECT_NE(line.find("L0 12.3"), std::string::npos) << line;
  EXPECT_NE(line.find("dead 4"), std::string::npos) << line;
  EXPECT_EQ(format_duration(3725), "1:02:05");
  EXPECT_EQ(format_duration(NAN), "?");
  EXPECT_EQ(format_count(999), "999");
}

TEST(Progress, TerminalRedrawsWithCarriageReturnAndPlainModePrintsLines) {
  test::TempDir dir;
  for (bool tty : {true, false}) {
    std::string path = dir / (tty ? "tty.txt" : "plain.txt");
    std::FILE* f = std::fopen(path.c_str(), "w");
    ProgressOptions o;
    o.total_tokens = 100;
    o.tty = tty;
    o.stream = f;
    o.interval_s = 0;  // plain mode: a line on every update
    ConsoleProgress p(o);
    p.update(10, {});
    p.message("checkpoint written");
    p.finish(100, {});
    std::fclose(f);
    std::ifstream in(path);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (tty) {
      EXPECT_EQ(text.front(), '\r');
      EXPECT_NE(text.find("checkpoint written\n"), std::string::npos);
      EXPECT_EQ(text.back(), '\n');
      EXPECT_NE(text.find("[####"), std::string::npos);
    } else {
      EXPECT_EQ(text.find('\r'), std::string::npos) << text;
      EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3) << text;
      EXPECT_NE(text.find("100/100 tok"), std::string::npos) << text;
    }
  }
}
