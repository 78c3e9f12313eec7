#include "windows/assembler.hpp"

#include <algorithm>

#include "common/errors.hpp"
#include "common/half.hpp"
#include "source/finite.hpp"

namespace fastfeed {

void copy_window(const Series& series, int64_t start, int64_t window, int64_t rate,
                 std::byte* dst, DType dst_type, const Normalization& norm) {
  const size_t stride_bytes = series.row_bytes() * static_cast<size_t>(rate);
  convert_rows(series.row(start), series.dtype, stride_bytes, window, series.row_elems, dst,
               dst_type, norm);
}

void gather_windows(const Series& series, const int64_t* starts, int64_t n, int64_t window,
                    int64_t rate, std::byte* dst, DType dst_type) {
  if (window < 1 || rate < 1) throw ArgumentError("window and rate must be >= 1");
  const int64_t span = WindowSpec{window, rate, 1, 0, 0, -1}.span();  // inputs only: no horizon
  for (int64_t i = 0; i < n; ++i) {
    if (starts[i] < 0 || starts[i] > series.length - span) {
      throw ArgumentError("window " + std::to_string(i) + " starts at step " + std::to_string(starts[i]) +
                          " and spans " + std::to_string(span) + " steps, outside a series of " +
                          std::to_string(series.length) + " steps");
    }
  }
  const size_t bytes = static_cast<size_t>(window * series.row_elems) * itemsize(dst_type);
  const Normalization none;
  for (int64_t i = 0; i < n; ++i) {
    copy_window(series, starts[i], window, rate, dst + static_cast<size_t>(i) * bytes, dst_type, none);
  }
}

std::vector<int64_t> Assembler::lengths_of(const std::vector<Series>& series) {
  std::vector<int64_t> lengths;
  lengths.reserve(series.size());
  for (const auto& s : series) lengths.push_back(s.length);
  return lengths;
}

Assembler::Assembler(std::vector<Series> inputs, std::vector<Series> targets,
                     const WindowSpec& spec, OutputSpec out)
    : inputs_(std::move(inputs)),
      targets_(std::move(targets)),
      spec_(spec),
      out_(std::move(out)),
      index_(lengths_of(inputs_), spec) {
  if (inputs_.empty()) throw ArgumentError("no series to read from");
  series_offset_.reserve(inputs_.size());
  int64_t steps = 0;
  for (const Series& series : inputs_) {
    series_offset_.push_back(steps);
    steps += series.length;
  }
  std::vector<std::shared_ptr<const MappedFile>> files = files_of(inputs_);
  for (const auto& f : files_of(targets_)) files.push_back(f);
  watch_ = FileWatch(std::move(files));
  if (spec.horizon > 0 && targets_.size() != inputs_.size()) {
    throw ArgumentError("targets must hold one series per input series (" +
                        std::to_string(inputs_.size()) + "), got " + std::to_string(targets_.size()));
  }
  for (size_t i = 0; i < targets_.size() && i < inputs_.size(); ++i) {
    if (targets_[i].length < inputs_[i].length) {
      throw ArgumentError("targets of series " + std::to_string(i) + " have " +
                          std::to_string(targets_[i].length) + " steps, the series has " +
                          std::to_string(inputs_[i].length));
    }
  }
  check_feat(out_.x_feat, inputs_[0].row_elems, "OutputSpec.x_feat", "a step of the inputs");
  if (spec.horizon > 0) check_feat(out_.y_feat, targets_[0].row_elems, "OutputSpec.y_feat", "a step of the targets");
  x_sample_bytes_ = static_cast<size_t>(spec.window * inputs_[0].row_elems) * itemsize(out_.x_dtype);
  if (spec.horizon > 0) {
    y_sample_bytes_ = static_cast<size_t>(spec.horizon * targets_[0].row_elems) * itemsize(out_.y_dtype);
  }
}

void Assembler::exclude_touching(const std::vector<std::vector<int64_t>>& bad_inputs,
                                 const std::vector<std::vector<int64_t>>& bad_targets) {
  const int64_t w = spec_.window, r = spec_.sampling_rate, stride = spec_.stride, start = spec_.start_index;
  std::vector<int64_t> out;
  // The window starting at t covers steps t + k*r: a bad step b rules out the starts b - k*r.
  auto rule_out = [&](size_t s, int64_t t) {
    if (t < start || (t - start) % stride != 0) return;
    const int64_t m = (t - start) / stride;
    if (m < index_.count_in_series(static_cast<int64_t>(s))) out.push_back(index_.first_of(static_cast<int64_t>(s)) + m);
  };
  for (size_t s = 0; s < bad_inputs.size() && s < inputs_.size(); ++s) {
    for (int64_t b : bad_inputs[s]) {
      for (int64_t k = 0; k < w; ++k) rule_out(s, b - k * r);
    }
  }
  if (spec_.horizon > 0) {
    for (size_t s = 0; s < bad_targets.size() && s < inputs_.size(); ++s) {
      for (int64_t b : bad_targets[s]) {
        for (int64_t j = 1; j <= spec_.horizon; ++j) rule_out(s, b - (w - 1 + j) * r);
      }
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  excluded_ = std::move(out);
}

int64_t Assembler::raw_sample(int64_t sample) const {
  if (excluded_.empty()) return sample;
  // excluded_[i] - i samples are kept before excluded_[i]; skip every excluded one at or
  // before the answer.
  int64_t lo = 0, hi = static_cast<int64_t>(excluded_.size());
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (excluded_[mid] - mid <= sample) lo = mid + 1;
    else hi = mid;
  }
  return sample + lo;
}

int64_t Assembler::flat_start(int64_t sample) const {
  const SampleRef ref = index_.locate(raw_sample(sample));
  return series_offset_[static_cast<size_t>(ref.series)] + ref.start;
}

void Assembler::fill_sample(int64_t sample, std::byte* x, std::byte* y) const {
  const SampleRef ref = index_.locate(raw_sample(sample));
  const Series& series = inputs_[ref.series];
  if (out_.check_finite) {
    require_finite(series, "series", ref.series, ref.start, spec_.window, spec_.sampling_rate, "the inputs");
    if (spec_.horizon > 0) {
      require_finite(targets_[ref.series], "series", ref.series, ref.start + spec_.window * spec_.sampling_rate,
                     spec_.horizon, spec_.sampling_rate, "the targets");
    }
  }
  copy_window(series, ref.start, spec_.window, spec_.sampling_rate, x, out_.x_dtype, out_.x_norm);
  if (spec_.horizon > 0) {
    const int64_t first_target = ref.start + spec_.window * spec_.sampling_rate;
    copy_window(targets_[ref.series], first_target, spec_.horizon, spec_.sampling_rate, y,
                out_.y_dtype, out_.y_norm);
  }
}

std::string Assembler::describe(int64_t sample) const {
  const SampleRef ref = index_.locate(raw_sample(sample));
  return "sample " + std::to_string(sample) + " (series " + std::to_string(ref.series) +
         ", steps from " + std::to_string(ref.start) + ")";
}

}  // namespace fastfeed
