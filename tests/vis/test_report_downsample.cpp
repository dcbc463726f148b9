// Min/max-per-column downsampling: every pixel column keeps its lowest and highest value.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "saelab/core/error.h"
#include "saelab/vis/report_downsample.h"
#include "saelab/vis/report_run.h"

namespace saelab {
namespace {

TEST(ReportDownsample, ShortSeriesIsUnchanged) {
  vis::XYSeries s{{0, 1, 2, 3, 4}, {5, 4, 3, 2, 1}};
  auto d = vis::downsample_min_max(s, 3);  // 5 points <= 2 * 3
  EXPECT_EQ(d.x, s.x);
  EXPECT_EQ(d.y, s.y);
}

// 100,000 noisy points (x = 10, 20, ...) with one spike up and one dip, into 1000 columns: the
// test bins the points itself (integer arithmetic on the index) and checks that each column's
// minimum and maximum, at their x, are among the drawn points.
TEST(ReportDownsample, KeepsEveryColumnsMinAndMaxAndTheSpike) {
  const int64_t n = 100000;
  const int columns = 1000;
  std::mt19937 rng(7);
  std::normal_distribution<double> noise(0, 0.01);
  vis::XYSeries s;
  for (int64_t i = 0; i < n; ++i) {
    s.x.push_back(double(10 * (i + 1)));
    s.y.push_back(1.0 / std::sqrt(double(i + 1)) + noise(rng));
  }
  s.y[61234] = 50.0;  // a loss spike
  s.y[80001] = -3.0;  // and a dip
  auto d = vis::downsample_min_max(s, columns);
  ASSERT_EQ(d.x.size(), d.y.size());
  EXPECT_LE(d.x.size(), size_t(2 * columns + 2));
  EXPECT_GE(d.x.size(), size_t(columns));
  EXPECT_TRUE(std::is_sorted(d.x.begin(), d.x.end()));
  // The points are equally spaced: point i lies in column floor(i * columns / (n - 1)), the last
  // point in the last column.
  std::vector<double> lo(columns, 1e300), hi(columns, -1e300), lo_x(columns), hi_x(columns);
  for (int64_t i = 0; i < n; ++i) {
    int c = static_cast<int>(std::min<int64_t>(columns - 1, i * columns / (n - 1)));
    if (s.y[i] < lo[c]) lo[c] = s.y[i], lo_x[c] = s.x[i];
    if (s.y[i] > hi[c]) hi[c] = s.y[i], hi_x[c] = s.x[i];
  }
  auto has = [&](double x, double y) {
    auto it = std::lower_bound(d.x.begin(), d.x.end(), x);
    return it != d.x.end() && *it == x && d.y[it - d.x.begin()] == y;
  };
  int missing = 0;
  for (int c = 0; c < columns; ++c) {
    missing += !has(lo_x[c], lo[c]);
    missing += !has(hi_x[c], hi[c]);
  }
  EXPECT_EQ(missing, 0);
  EXPECT_EQ(*std::max_element(d.y.begin(), d.y.end()), 50.0);
  EXPECT_EQ(*std::min_element(d.y.begin(), d.y.end()), -3.0);
  EXPECT_EQ(d.x.front(), s.x.front());
  EXPECT_EQ(d.x.back(), s.x.back());
}

TEST(ReportDownsample, RefusesMismatchedLengthsAndNoColumns) {
  EXPECT_THROW(vis::downsample_min_max({{1, 2}, {1}}, 10), Error);
  EXPECT_THROW(vis::downsample_min_max({{1, 2}, {1, 2}}, 0), Error);
}

TEST(ReportGroups, FollowTheDashboardOrderAndSortKeys) {
  auto g = vis::chart_groups({"details/current_learning_rate", "zeta", "metrics/l0",
                              "losses/mse_loss", "losses/l1_loss", "custom/x"});
  ASSERT_EQ(g.size(), 5u);
  EXPECT_EQ(g[0].first, "losses");
  EXPECT_EQ(g[0].second, (std::vector<std::string>{"losses/l1_loss", "losses/mse_loss"}));
  EXPECT_EQ(g[1].first, "metrics");
  EXPECT_EQ(g[2].first, "details");
  EXPECT_EQ(g[3].first, "custom");
  EXPECT_EQ(g[4].first, "other");
}

TEST(ReportGroups, LogYOnlyForPositiveLossesAndL0) {
  EXPECT_TRUE(vis::chart_log_y("losses/mse_loss", {1, 0.5, 0.1}));
  EXPECT_FALSE(vis::chart_log_y("losses/l1_loss", {1, 0, 0.1}));  // a zero cannot be drawn on log
  EXPECT_TRUE(vis::chart_log_y("metrics/l0", {30, 12}));
  EXPECT_FALSE(vis::chart_log_y("metrics/explained_variance", {0.5, 0.9}));
}

}  // namespace
}  // namespace saelab
