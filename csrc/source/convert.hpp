// Copying rows of elements while converting their dtype and, optionally, standardising them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/dtype.hpp"

namespace fastfeed {

// Per-element (mean, std) over one row: out = (double(x) - mean[i]) / std[i], then cast.
struct Normalization {
  std::vector<double> mean;
  std::vector<double> std;
  bool active() const { return !mean.empty(); }
};

// Copies `n_rows` rows of `row_elems` elements from `src` (consecutive rows `src_stride`
// bytes apart) to contiguous rows at `dst`, converting `src_type` to `dst_type` as
// NumPy's astype does (bfloat16: through float32, as PyTorch does). With an active `norm`
// the values are standardised in double precision before the final cast.
void convert_rows(const std::byte* src, DType src_type, size_t src_stride, int64_t n_rows,
                  int64_t row_elems, std::byte* dst, DType dst_type, const Normalization& norm);

}  // namespace fastfeed
