// One series as the core sees it: rows of `row_elems` elements laid out contiguously.
#pragma once
#include <cstddef>
#include <cstdint>
#include <algorithm>
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
