// Window arithmetic: which samples exist and where each one starts, in O(1) memory per series.
#pragma once
#include <cstdint>
#include <vector>

namespace fastfeed {

struct WindowSpec {
  int64_t window = 1;         // steps in one sample
  int64_t sampling_rate = 1;  // distance between the steps of a sample
  int64_t stride = 1;         // distance between consecutive window starts
  int64_t horizon = 0;        // target steps after the window's last step
  int64_t start_index = 0;    // first step a window may use
  int64_t end_index = -1;     // one past the last step a sample may use; -1: the series' end

  // Steps from a window's first input to its last target, inclusive: the one place this is
  // computed (Python reads it as WindowSpec.span).
  int64_t span() const { return (window - 1 + horizon) * sampling_rate + 1; }

  void validate() const;
};

struct SampleRef {
  int64_t series;  // which series
  int64_t start;   // the step of the window's first input
};

// Numbers the samples of many series series by series, start by start, and finds any sample
// from its number with a binary search over per-series prefix sums (no per-window table).
class SampleIndex {
 public:
  SampleIndex(const std::vector<int64_t>& series_lengths, const WindowSpec& spec);

  int64_t size() const { return first_.back(); }
  int64_t count_in_series(int64_t series) const { return first_[series + 1] - first_[series]; }
  int64_t first_of(int64_t series) const { return first_[series]; }
  SampleRef locate(int64_t sample) const;
  const WindowSpec& spec() const { return spec_; }

  // Windows a series of `length` steps holds under `spec`.
  static int64_t count_windows(int64_t length, const WindowSpec& spec);

 private:
  WindowSpec spec_;
  std::vector<int64_t> first_;  // first_[i]: number of the first sample of series i; back(): total
};

}  // namespace fastfeed
