// One series as the core sees it: rows of `row_elems` elements laid out contiguously.
#pragma once
#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <climits>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.hpp"
#include "source/mapped_file.hpp"

namespace fastfeed {

struct Series {
  const std::byte* data = nullptr;
  int64_t length = 0;     // steps (rows)
  int64_t row_elems = 1;  // elements in one step (the product of the feature shape)
  DType dtype = DType::Float32;
  // Keeps a memory map alive; empty for memory the caller owns (NumPy arrays kept by Python).
  std::shared_ptr<const MappedFile> file;

  size_t row_bytes() const { return static_cast<size_t>(row_elems) * itemsize(dtype); }
  const std::byte* row(int64_t step) const { return data + static_cast<size_t>(step) * row_bytes(); }
};

// "To the series' end" for an end index (see slice_steps).
inline constexpr int64_t kSeriesEnd = INT64_MAX;

// Steps [lo, hi) of a series of `length` steps that `start` and `end` select, as Python's
// slicing reads them: a negative index counts from the end, and an index past either end
// stands for that end. `end` == kSeriesEnd is the series' end.
struct StepRange {
  int64_t lo = 0;
  int64_t hi = 0;
};
inline StepRange slice_steps(int64_t length, int64_t start, int64_t end) {
  auto clip = [length](int64_t i) { return i < 0 ? std::max<int64_t>(0, length + i) : std::min(i, length); };
  return StepRange{clip(start), end == kSeriesEnd ? length : clip(end)};
}

// The distinct memory maps behind some series (many sequences often share one file).
inline std::vector<std::shared_ptr<const MappedFile>> files_of(const std::vector<Series>& series) {
  std::vector<std::shared_ptr<const MappedFile>> out;
  for (const Series& s : series) {
    if (s.file && (out.empty() || out.back() != s.file) &&
        std::find(out.begin(), out.end(), s.file) == out.end()) {
      out.push_back(s.file);
    }
  }
  return out;
}

}  // namespace fastfeed
