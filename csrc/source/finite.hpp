// The NaN/Inf check behind check_finite: names the series and step of the first bad value.
#pragma once
#include <cstdint>
#include <vector>

#include "source/series.hpp"

namespace fastfeed {

// Throws std::runtime_error naming `noun` `index` (e.g. "series 3"), the step and the element
// of the first NaN or Inf among `count` steps taken every `rate` steps from `start`.
void require_finite(const Series& series, const char* noun, int64_t index, int64_t start,
                    int64_t count, int64_t rate, const char* what);

// The same for the label of one sequence (row `sequence` of `labels`; a label has no steps).
void require_finite_label(const Series& labels, int64_t sequence);

// For each series, the steps holding a NaN or Inf in any element, in increasing order. The
// rows are scanned once by `threads` threads; integer and bool series have none.
std::vector<std::vector<int64_t>> non_finite_steps(const std::vector<Series>& series, int threads);

}  // namespace fastfeed
