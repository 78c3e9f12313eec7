// Per-element mean and standard deviation over the steps of many series, in one pass.
#pragma once
#include <cstdint>
#include <vector>

#include "source/series.hpp"

namespace fastfeed {

struct Moments {
  std::vector<double> mean;  // 0 for an element without a finite value
  std::vector<double> std;   // population standard deviation (ddof = 0); 0 as above
  int64_t count = 0;         // steps seen
};

// What a NaN or Inf among the steps does to the statistics.
enum class NonFinite {
  Fail,  // ArgumentError naming the series, the step and the element (check_finite=False/"raise")
  Skip,  // left out: each element's statistics use that element's finite values ("skip"/"mask")
};

// Statistics of the steps slice_steps(length, start, end) selects in every series, computed
// with Welford's update so that large offsets do not cancel catastrophically.
Moments compute_moments(const std::vector<Series>& series, int64_t start, int64_t end, NonFinite non_finite);

}  // namespace fastfeed
