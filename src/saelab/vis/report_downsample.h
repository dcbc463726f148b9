// Downsampling a long metric series for drawing without hiding its spikes: a chart a thousand
// pixels wide cannot show a hundred thousand points, but every pixel column must still reach the
// lowest and the highest value logged in it, or a loss spike vanishes from the picture.
#pragma once
#include <cstddef>
#include <vector>

namespace saelab::vis {

struct XYSeries {
  std::vector<double> x;  // non-decreasing (training tokens)
  std::vector<double> y;
};

// Splits [x.front(), x.back()] into `columns` equal-width ranges and keeps, from each, the point
// with the smallest y and the point with the largest y (earliest on ties), in x order, plus the
// first and the last point of the series. A series of at most 2 * columns points comes back
// unchanged. x must be non-decreasing and as long as y; columns >= 1.
XYSeries downsample_min_max(const XYSeries& in, int columns);

// The pixel columns the report draws a chart's x-range into (charts zoom into this data, so it
// holds more columns than a chart is wide).
constexpr int kReportColumns = 1000;

}  // namespace saelab::vis
