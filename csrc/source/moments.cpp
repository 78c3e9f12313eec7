#include "source/moments.hpp"

#include <algorithm>
#include <cmath>

#include "common/errors.hpp"
#include "source/convert.hpp"

namespace fastfeed {

Moments compute_moments(const std::vector<Series>& series, int64_t start, int64_t end, bool finite_rows_only) {
  if (series.empty()) throw ArgumentError("no series to compute statistics of");
  const int64_t width = series[0].row_elems;
  Moments m;
  m.mean.assign(static_cast<size_t>(width), 0.0);
  std::vector<double> m2(static_cast<size_t>(width), 0.0);
  // Welford's updates run on the values minus the first row: a mean far larger than the spread
  // (1e9 + noise) would otherwise lose the noise's digits in every update, not only at the end.
  std::vector<double> shift;
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
        if (m.count == 0) shift.assign(x, x + width);
        ++m.count;
        const double inv = 1.0 / static_cast<double>(m.count);
        for (int64_t i = 0; i < width; ++i) {
          const double v = x[i] - shift[i];
          const double delta = v - m.mean[i];
          m.mean[i] += delta * inv;
          m2[i] += delta * (v - m.mean[i]);
        }
      }
    }
  }
  m.std.resize(static_cast<size_t>(width));
  for (int64_t i = 0; i < width; ++i) {
    if (m.count > 0) m.mean[i] += shift[i];
    m.std[i] = m.count > 0 ? std::sqrt(m2[i] / static_cast<double>(m.count)) : 0.0;
  }
  return m;
}

}  // namespace fastfeed
