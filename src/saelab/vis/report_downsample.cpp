// Min/max-per-column downsampling (see report_downsample.h).
#include "saelab/vis/report_downsample.h"

#include <algorithm>
#include <cmath>

#include "saelab/core/error.h"

namespace saelab::vis {

XYSeries downsample_min_max(const XYSeries& in, int columns) {
  if (in.x.size() != in.y.size())
    fail("downsample: {} x values for {} y values", in.x.size(), in.y.size());
  if (columns < 1) fail("downsample: expected at least one column, got {}", columns);
  const size_t n = in.x.size();
  if (n <= 2 * static_cast<size_t>(columns)) return in;
  const double x0 = in.x.front(), span = in.x.back() - in.x.front();
  auto column_of = [&](double x) {
    if (!(span > 0)) return 0;
    return std::min(columns - 1, static_cast<int>(std::floor((x - x0) / span * columns)));
  };
  std::vector<char> keep(n, 0);
  keep[0] = keep[n - 1] = 1;
  size_t begin = 0;
  while (begin < n) {
    const int c = column_of(in.x[begin]);
    size_t end = begin, lo = begin, hi = begin;
    while (end < n && column_of(in.x[end]) == c) {
      if (in.y[end] < in.y[lo]) lo = end;
      if (in.y[end] > in.y[hi]) hi = end;
      ++end;
    }
    keep[lo] = keep[hi] = 1;
    begin = end;
  }
  XYSeries out;
  for (size_t i = 0; i < n; ++i)
    if (keep[i]) {
      out.x.push_back(in.x[i]);
      out.y.push_back(in.y[i]);
    }
  return out;
}

}  // namespace saelab::vis
