#include "source/finite.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>

namespace fastfeed {

namespace {

// Whether element i of a row is finite (integers and bools always are).
bool finite_at(const std::byte* row, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::Float16: {
      uint16_t h;
      std::memcpy(&h, row + 2 * i, 2);
      return (h & 0x7c00) != 0x7c00;
    }
    case DType::Float32: return std::isfinite(reinterpret_cast<const float*>(row)[i]);
    case DType::Float64: return std::isfinite(reinterpret_cast<const double*>(row)[i]);
    default: return true;
  }
}

// The element of a floating row that is NaN or Inf, or -1.
int64_t first_non_finite(const std::byte* row, DType dtype, int64_t n) {
  if (!is_floating(dtype)) return -1;
  for (int64_t i = 0; i < n; ++i) {
    if (!finite_at(row, dtype, i)) return i;
  }
  return -1;
}

}  // namespace

void require_finite(const Series& series, const char* noun, int64_t index, int64_t start,
                    int64_t count, int64_t rate, const char* what) {
  if (!is_floating(series.dtype)) return;
  for (int64_t k = 0; k < count; ++k) {
    const int64_t step = start + k * rate;
    const int64_t e = first_non_finite(series.row(step), series.dtype, series.row_elems);
    if (e >= 0) {
      throw std::runtime_error(std::string("non-finite value (NaN or Inf) in ") + what + " of " + noun + " " +
                               std::to_string(index) + " at step " + std::to_string(step) + ", element " +
                               std::to_string(e));
    }
  }
}

void mask_non_finite(const Series& series, int64_t start, int64_t count, int64_t rate, std::byte* dst,
                     DType dst_type, bool* observed) {
  const int64_t n = series.row_elems;
  if (!is_floating(series.dtype)) {
    if (observed) std::fill(observed, observed + count * n, true);
    return;
  }
  const size_t size = itemsize(dst_type);
  for (int64_t k = 0; k < count; ++k) {
    const std::byte* row = series.row(start + k * rate);
    for (int64_t i = 0; i < n; ++i) {
      const bool finite = finite_at(row, series.dtype, i);
      if (observed) observed[k * n + i] = finite;
      if (!finite) std::memset(dst + static_cast<size_t>(k * n + i) * size, 0, size);  // 0 in every dtype
    }
  }
}

void require_finite_row(const Series& rows, int64_t row, const char* what) {
  const int64_t e = first_non_finite(rows.row(row), rows.dtype, rows.row_elems);
  if (e >= 0) {
    throw std::runtime_error(std::string("non-finite value (NaN or Inf) in ") + what + " " + std::to_string(row) +
                             ", element " + std::to_string(e));
  }
}

void require_finite_label(const Series& labels, int64_t sequence) {
  require_finite_row(labels, sequence, "the label of sequence");
}

std::vector<std::vector<int64_t>> non_finite_steps(const std::vector<Series>& series, int threads) {
  // Work comes in chunks of rows so one long series still spreads over every thread.
  struct Chunk {
    size_t series;
    int64_t begin, end;
    std::vector<int64_t> bad;
  };
  constexpr int64_t kRows = 1 << 16;
  std::vector<Chunk> chunks;
  for (size_t s = 0; s < series.size(); ++s) {
    if (!is_floating(series[s].dtype)) continue;
    for (int64_t b = 0; b < series[s].length; b += kRows) {
      chunks.push_back({s, b, std::min(series[s].length, b + kRows), {}});
    }
  }
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t c; (c = next.fetch_add(1)) < chunks.size();) {
      Chunk& chunk = chunks[c];
      const Series& s = series[chunk.series];
      for (int64_t t = chunk.begin; t < chunk.end; ++t) {
        if (first_non_finite(s.row(t), s.dtype, s.row_elems) >= 0) chunk.bad.push_back(t);
      }
    }
  };
  const size_t n_threads = std::min<size_t>(static_cast<size_t>(std::max(1, threads)), chunks.size());
  std::vector<std::thread> pool;
  for (size_t i = 1; i < n_threads; ++i) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  std::vector<std::vector<int64_t>> out(series.size());
  for (const Chunk& c : chunks) out[c.series].insert(out[c.series].end(), c.bad.begin(), c.bad.end());
  return out;
}

}  // namespace fastfeed
