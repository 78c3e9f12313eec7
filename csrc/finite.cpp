#include "finite.hpp"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

namespace fastfeed {

namespace {

// The element of a floating row that is NaN or Inf, or -1.
int64_t first_non_finite(const std::byte* row, DType dtype, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    bool finite = true;
    switch (dtype) {
      case DType::Float16: {
        uint16_t h;
        std::memcpy(&h, row + 2 * i, 2);
        finite = (h & 0x7c00) != 0x7c00;
        break;
      }
      case DType::Float32: finite = std::isfinite(reinterpret_cast<const float*>(row)[i]); break;
      case DType::Float64: finite = std::isfinite(reinterpret_cast<const double*>(row)[i]); break;
      default: return -1;  // integers and bools are always finite
    }
    if (!finite) return i;
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

}  // namespace fastfeed
