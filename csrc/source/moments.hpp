// Per-element mean and standard deviation over the steps of many series, in one pass.
#pragma once
#include <cstdint>
#include <vector>

#include "source/series.hpp"

namespace fastfeed {

struct Moments {
  std::vector<double> mean;
  std::vector<double> std;  // population standard deviation (ddof = 0)
  int64_t count = 0;        // steps seen
};

// Statistics of steps [start, end) of every series (end < 0: to each series' end), computed
// with Welford's update so that large offsets do not cancel catastrophically.
// With `finite_rows_only`, steps holding a NaN or Inf are left out (check_finite="skip").
Moments compute_moments(const std::vector<Series>& series, int64_t start, int64_t end,
                        bool finite_rows_only = false);

}  // namespace fastfeed
