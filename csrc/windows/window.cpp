#include "windows/window.hpp"

#include <algorithm>
#include <string>

#include "common/errors.hpp"

namespace fastfeed {

int64_t SampleIndex::count_windows(int64_t length, const WindowSpec& spec) {
  const StepRange range = spec.range_in(length);
  const int64_t span = spec.span();
  if (range.hi - range.lo < span) return 0;
  return (range.hi - range.lo - span) / spec.stride + 1;
}

void WindowSpec::validate() const {
  require_arg(window >= 1, "WindowSpec.window", ">= 1", window);
  require_arg(sampling_rate >= 1, "WindowSpec.sampling_rate", ">= 1", sampling_rate);
  require_arg(stride >= 1, "WindowSpec.stride", ">= 1", stride);
  require_arg(horizon >= 0, "WindowSpec.horizon", ">= 0", horizon);
  require_arg(target_shift >= 0, "WindowSpec.target_shift", ">= 0", target_shift);
  if (target_shift > 0 && horizon > 0) throw ArgumentError("WindowSpec: target_shift and horizon exclude each other");
}

SampleIndex::SampleIndex(const std::vector<int64_t>& series_lengths, const WindowSpec& spec)
    : spec_(spec) {
  spec.validate();
  first_.reserve(series_lengths.size() + 1);
  lo_.reserve(series_lengths.size());
  first_.push_back(0);
  for (int64_t len : series_lengths) {
    first_.push_back(first_.back() + count_windows(len, spec));
    lo_.push_back(spec.range_in(len).lo);
  }
}

SampleRef SampleIndex::locate(int64_t sample) const {
  if (sample < 0 || sample >= size()) {
    throw ArgumentError("sample " + std::to_string(sample) + " is outside [0, " + std::to_string(size()) + ")");
  }
  // The last series whose first sample is <= `sample`; empty series share their successor's
  // first number, and upper_bound skips past them to the series that holds the sample.
  auto it = std::upper_bound(first_.begin(), first_.end(), sample);
  int64_t series = static_cast<int64_t>(it - first_.begin()) - 1;
  int64_t k = sample - first_[series];
  return SampleRef{series, lo_[series] + k * spec_.stride};
}

}  // namespace fastfeed
