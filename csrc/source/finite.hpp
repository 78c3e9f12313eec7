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

// The same for row `row` of `rows` (a table with one row per series or sequence): the message
// names `what` followed by the row number.
void require_finite_row(const Series& rows, int64_t row, const char* what);

// The same for the label of one sequence (row `sequence` of `labels`; a label has no steps).
void require_finite_label(const Series& labels, int64_t sequence);

// check_finite="mask" for `count` steps taken every `rate` steps from `start`, already written
// to `dst` (contiguous, `dst_type`): each element whose source value is NaN or Inf becomes 0,
// and `observed` (one bool per element, may be null) says which ones were finite.
void mask_non_finite(const Series& series, int64_t start, int64_t count, int64_t rate, std::byte* dst,
                     DType dst_type, bool* observed);

// For each series, the steps holding a NaN or Inf in any element, in increasing order. The
// rows are scanned once by `threads` threads; integer and bool series have none.
std::vector<std::vector<int64_t>> non_finite_steps(const std::vector<Series>& series, int threads);

}  // namespace fastfeed
