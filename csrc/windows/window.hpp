// Window arithmetic: which samples exist and where each one starts, in O(1) memory per series.
#pragma once
#include <cstdint>
#include <vector>

#include "source/series.hpp"

namespace fastfeed {

struct WindowSpec {
  int64_t window = 1;         // steps in one sample
  int64_t sampling_rate = 1;  // distance between the steps of a sample
  int64_t stride = 1;         // distance between consecutive window starts
  int64_t horizon = 0;        // target steps after the window's last step
  // First step a window may use, and one past the last step a sample may read, in every
  // series; negative values count from each series' end (see slice_steps).
  int64_t start_index = 0;
  int64_t end_index = kSeriesEnd;
  // >= 1 instead of a horizon: the targets are the window shifted by target_shift steps
  // (each sampling_rate apart), window steps long.
  int64_t target_shift = 0;

  // Sampling steps the targets reach past the window's last input: the horizon or the shift.
  int64_t lookahead() const { return target_shift > 0 ? target_shift : horizon; }
  // Target steps of one sample, and the first one's distance (in sampling steps) from the
  // window's first input.
  int64_t target_steps() const { return target_shift > 0 ? window : horizon; }
  int64_t target_offset() const { return target_shift > 0 ? target_shift : window; }
  bool has_targets() const { return target_steps() > 0; }
  // Steps from a window's first input to its last target, inclusive: the one place this is
  // computed (Python reads it as WindowSpec.span).
  int64_t span() const { return (window - 1 + lookahead()) * sampling_rate + 1; }
  // The steps a series of `length` steps lends to windows.
  StepRange range_in(int64_t length) const { return slice_steps(length, start_index, end_index); }

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
  // The first step a window of `series` may start at.
  int64_t first_start(int64_t series) const { return lo_[series]; }
  SampleRef locate(int64_t sample) const;
  const WindowSpec& spec() const { return spec_; }

  // Windows a series of `length` steps holds under `spec`.
  static int64_t count_windows(int64_t length, const WindowSpec& spec);

 private:
  WindowSpec spec_;
  std::vector<int64_t> first_;  // first_[i]: number of the first sample of series i; back(): total
  std::vector<int64_t> lo_;     // per series: the first step of its range
};

}  // namespace fastfeed
