#include "source/moments.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "common/errors.hpp"
#include "source/convert.hpp"

namespace fastfeed {

namespace {

// Welford's running mean and sum of squared deviations of one element, on the values minus
// the element's first value: a mean far larger than the spread (1e9 + noise) would otherwise
// lose the noise's digits in every update, not only at the end.
struct Running {
  double shift = 0, mean = 0, m2 = 0;
  int64_t n = 0;
  void add(double x) {
    if (n == 0) shift = x;
    ++n;
    const double v = x - shift;
    const double delta = v - mean;
    mean += delta / static_cast<double>(n);
    m2 += delta * (v - mean);
  }
};

[[noreturn]] void fail_non_finite(size_t series, int64_t step, int64_t element, double value) {
  throw ArgumentError("series " + std::to_string(series) + ", step " + std::to_string(step) + ", element " +
                      std::to_string(element) + " holds " + (std::isnan(value) ? "NaN" : "Inf"));
}

}  // namespace

Moments compute_moments(const std::vector<Series>& series, int64_t start, int64_t end, NonFinite non_finite) {
  if (series.empty()) throw ArgumentError("no series to compute statistics of");
  const int64_t width = series[0].row_elems;
  std::vector<Running> running(static_cast<size_t>(width));
  Moments m;
  // Rows are converted to double in chunks so that every dtype takes the same path.
  constexpr int64_t kChunkRows = 1024;
  std::vector<double> chunk(static_cast<size_t>(kChunkRows * width));
  const Normalization none;
  for (size_t i = 0; i < series.size(); ++i) {
    const Series& s = series[i];
    const StepRange range = slice_steps(s.length, start, end);
    for (int64_t row = range.lo; row < range.hi; row += kChunkRows) {
      const int64_t rows = std::min(kChunkRows, range.hi - row);
      convert_rows(s.row(row), s.dtype, s.row_bytes(), rows, width, reinterpret_cast<std::byte*>(chunk.data()),
                   DType::Float64, none);
      for (int64_t r = 0; r < rows; ++r) {
        const double* x = chunk.data() + r * width;
        for (int64_t e = 0; e < width; ++e) {
          if (std::isfinite(x[e])) running[static_cast<size_t>(e)].add(x[e]);
          else if (non_finite == NonFinite::Fail) fail_non_finite(i, row + r, e, x[e]);
        }
      }
      m.count += rows;
    }
  }
  for (const Running& r : running) {
    m.mean.push_back(r.n > 0 ? r.shift + r.mean : 0.0);
    m.std.push_back(r.n > 0 ? std::sqrt(r.m2 / static_cast<double>(r.n)) : 0.0);
  }
  return m;
}

}  // namespace fastfeed
