#include "moments.hpp"

#include <algorithm>
#include <cmath>

#include "convert.hpp"
#include "errors.hpp"

namespace fastfeed {

Moments compute_moments(const std::vector<Series>& series, int64_t start, int64_t end, bool finite_rows_only) {
  if (series.empty()) throw ArgumentError("no series to compute statistics of");
  const int64_t width = series[0].row_elems;
  Moments m;
  m.mean.assign(static_cast<size_t>(width), 0.0);
  std::vector<double> m2(static_cast<size_t>(width), 0.0);
  // Rows are converted to double in chunks so that every dtype takes the same path.
  constexpr int64_t kChunkRows = 1024;
  std::vector<double> chunk(static_cast<size_t>(kChunkRows * width));
  const Normalization none;
  for (const Series& s : series) {
    const int64_t lo = std::min(start, s.length);
    const int64_t hi = end < 0 ? s.length : std::min(end, s.length);
    for (int64_t row = lo; row < hi; row += kChunkRows) {
      const int64_t rows = std::min(kChunkRows, hi - row);
      convert_rows(s.row(row), s.dtype, s.row_bytes(), rows, width,
                   reinterpret_cast<std::byte*>(chunk.data()), DType::Float64, none);
      for (int64_t r = 0; r < rows; ++r) {
        const double* x = chunk.data() + r * width;
        if (finite_rows_only && !std::all_of(x, x + width, [](double v) { return std::isfinite(v); })) continue;
        ++m.count;
        const double inv = 1.0 / static_cast<double>(m.count);
        for (int64_t i = 0; i < width; ++i) {
          const double delta = x[i] - m.mean[i];
          m.mean[i] += delta * inv;
          m2[i] += delta * (x[i] - m.mean[i]);
        }
      }
    }
  }
  m.std.resize(static_cast<size_t>(width));
  for (int64_t i = 0; i < width; ++i) {
    m.std[i] = m.count > 0 ? std::sqrt(m2[i] / static_cast<double>(m.count)) : 0.0;
  }
  return m;
}

}  // namespace fastfeed
