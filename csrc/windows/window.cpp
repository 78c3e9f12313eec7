#include "windows/window.hpp"

#include <algorithm>

#include "common/errors.hpp"

namespace fastfeed {

int64_t SampleIndex::count_windows(int64_t length, const WindowSpec& spec) {
  int64_t lo = spec.start_index;
  int64_t hi = spec.end_index < 0 ? length : std::min(spec.end_index, length);
  int64_t span = spec.span();
  if (hi - lo < span) return 0;
  return (hi - lo - span) / spec.stride + 1;
}

void WindowSpec::validate() const {
  require_arg(window >= 1, "WindowSpec.window", ">= 1", window);
  require_arg(sampling_rate >= 1, "WindowSpec.sampling_rate", ">= 1", sampling_rate);
  require_arg(stride >= 1, "WindowSpec.stride", ">= 1", stride);
  require_arg(horizon >= 0, "WindowSpec.horizon", ">= 0", horizon);
  require_arg(start_index >= 0, "WindowSpec.start_index", ">= 0", start_index);
}

SampleIndex::SampleIndex(const std::vector<int64_t>& series_lengths, const WindowSpec& spec)
    : spec_(spec) {
  spec.validate();
  first_.reserve(series_lengths.size() + 1);
  first_.push_back(0);
  for (int64_t len : series_lengths) first_.push_back(first_.back() + count_windows(len, spec));
}

SampleRef SampleIndex::locate(int64_t sample) const {
  // The last series whose first sample is <= `sample`; empty series share their successor's
  // first number, and upper_bound skips past them to the series that holds the sample.
  auto it = std::upper_bound(first_.begin(), first_.end(), sample);
  int64_t series = static_cast<int64_t>(it - first_.begin()) - 1;
  int64_t k = sample - first_[series];
  return SampleRef{series, spec_.start_index + k * spec_.stride};
}

}  // namespace fastfeed
