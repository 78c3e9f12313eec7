#include "windows/assembler.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/errors.hpp"
#include "common/half.hpp"
#include "pipeline/block.hpp"
#include "pipeline/fields.hpp"
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
  const int64_t span = WindowSpec{window, rate}.span();  // inputs only: no horizon
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

namespace {

// How a feature shape is named in an error: the OutputSpec's fields for x and y, the argument
// for the others.
std::string feat_label(std::string_view field) {
  if (field == field::kX) return "OutputSpec.x_feat";
  if (field == field::kY) return "OutputSpec.y_feat";
  return std::string(field);
}

}  // namespace

std::vector<int64_t> Assembler::lengths_of(const std::vector<Series>& series) {
  std::vector<int64_t> lengths;
  lengths.reserve(series.size());
  for (const auto& s : series) lengths.push_back(s.length);
  return lengths;
}

void Assembler::check_aligned(const std::vector<Series>& field, const char* name) const {
  if (field.size() != inputs_.size()) {
    throw ArgumentError(std::string(name) + " must hold one series per input series (" +
                        std::to_string(inputs_.size()) + "), got " + std::to_string(field.size()));
  }
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i].length < inputs_[i].length) {
      throw ArgumentError(std::string(name) + " of series " + std::to_string(i) + " have " +
                          std::to_string(field[i].length) + " steps, the series has " +
                          std::to_string(inputs_[i].length));
    }
  }
}

int Assembler::add_layout(std::string name, DType dtype, std::vector<int64_t> tail) {
  int64_t elems = 1;
  for (int64_t d : tail) elems *= d;
  layouts_.push_back(FieldLayout{std::move(name), dtype, std::move(tail), static_cast<size_t>(elems) * itemsize(dtype)});
  return static_cast<int>(layouts_.size()) - 1;
}

void Assembler::add_step_field(std::vector<Series> series, int64_t offset, int64_t steps, const FieldOutput& out,
                               bool scaled, std::string_view name, std::string_view observed, const char* what) {
  check_aligned(series, what);
  check_feat(out.feat, series[0].row_elems, feat_label(name).c_str(), "a step of its series");
  StepField f;
  f.series = std::move(series);
  f.offset = offset;
  f.steps = steps;
  f.dtype = out.dtype;
  f.norm = out.norm;
  f.scaled = scaled;
  f.what = what;
  f.slot = add_layout(std::string(name), out.dtype, shape_of({steps}, out.feat));
  if (out_.mask_non_finite && !observed.empty()) {
    f.observed = add_layout(std::string(observed), DType::Bool, shape_of({steps}, out.feat));
  }
  fields_.push_back(std::move(f));
}

Assembler::Assembler(std::vector<Series> inputs, std::vector<Series> targets, const WindowSpec& spec,
                     OutputSpec out, WindowExtras extras)
    : inputs_(std::move(inputs)),
      spec_(spec),
      out_(std::move(out)),
      index_(lengths_of(inputs_), spec),
      statics_(std::move(extras.statics)),
      scaling_(extras.scaling) {
  if (inputs_.empty()) throw ArgumentError("no series to read from");
  series_offset_.reserve(inputs_.size());
  int64_t steps = 0;
  for (const Series& series : inputs_) {
    series_offset_.push_back(steps);
    steps += series.length;
  }
  if (spec.has_targets() && targets.empty()) throw ArgumentError("the spec has targets, but no target series were given");
  const bool scaled = scaling_ != Scaling::None;
  if (scaled && out_.x_norm.active()) throw ArgumentError("scaling and normalising the inputs exclude each other");
  // Targets that are the inputs themselves are scaled with them; explicit ones never are.
  const bool self_targets = !targets.empty() && targets[0].data == inputs_[0].data;
  std::vector<Series> inputs_copy = inputs_;
  add_step_field(std::move(inputs_copy), 0, spec.window, FieldOutput{out_.x_dtype, out_.x_norm, out_.x_feat}, scaled,
                 field::kX, field::kObserved, "the inputs");
  if (spec.has_targets()) {
    add_step_field(std::move(targets), spec.target_offset(), spec.target_steps(),
                   FieldOutput{out_.y_dtype, out_.y_norm, out_.y_feat}, scaled && self_targets, field::kY,
                   field::kYObserved, "the targets");
  }
  if (!extras.covariates.empty()) {
    add_step_field(std::move(extras.covariates), 0, spec.window, extras.covariates_out, false, field::kCovariates, {},
                   "the covariates");
  }
  if (!extras.known.empty()) {
    add_step_field(std::move(extras.known), 0, spec.window + spec.lookahead(), extras.known_out, false, field::kKnown,
                   {}, "the known fields");
  }
  if (!statics_.empty()) {
    if (statics_[0].length != static_cast<int64_t>(inputs_.size())) {
      throw ArgumentError("static has " + std::to_string(statics_[0].length) + " rows, but there are " +
                          std::to_string(inputs_.size()) + " series (one row per series)");
    }
    check_feat(out_.static_out.feat, statics_[0].row_elems, "static", "a row of static");
    static_slot_ = add_layout(std::string(field::kStatic), out_.static_out.dtype, out_.static_out.feat);
  }
  if (out_.with_index) {
    series_slot_ = add_layout(std::string(field::kSeries), DType::Int64, {});
    start_slot_ = add_layout(std::string(field::kStart), DType::Int64, {});
  }
  if (scaled) {
    scale_slot_ = add_layout(std::string(field::kScale), DType::Float32, out_.x_feat);
    if (scaling_ == Scaling::Standard) loc_slot_ = add_layout(std::string(field::kLoc), DType::Float32, out_.x_feat);
  }
  std::vector<std::shared_ptr<const MappedFile>> files;
  for (const StepField& f : fields_) {
    for (const auto& file : files_of(f.series)) files.push_back(file);
  }
  for (const auto& file : files_of(statics_)) files.push_back(file);
  watch_ = FileWatch(std::move(files));
}

void Assembler::exclude_non_finite(int threads) {
  const int64_t r = spec_.sampling_rate, stride = spec_.stride;
  std::vector<int64_t> out;
  // A field reading steps t + (offset + k) * r, k < steps, of a window starting at t: a bad
  // step b rules out the starts b - (offset + k) * r.
  auto rule_out = [&](size_t s, int64_t t) {
    const int64_t lo = index_.first_start(static_cast<int64_t>(s));
    if (t < lo || (t - lo) % stride != 0) return;
    const int64_t m = (t - lo) / stride;
    if (m < index_.count_in_series(static_cast<int64_t>(s))) out.push_back(index_.first_of(static_cast<int64_t>(s)) + m);
  };
  std::vector<const std::vector<Series>*> scanned;  // x and self-targets share their scan
  std::vector<std::vector<std::vector<int64_t>>> scans;
  for (const StepField& f : fields_) {
    size_t which = 0;
    while (which < scanned.size() && !(scanned[which]->size() == f.series.size() &&
                                       (*scanned[which])[0].data == f.series[0].data)) {
      ++which;
    }
    if (which == scanned.size()) {
      scanned.push_back(&f.series);
      scans.push_back(non_finite_steps(f.series, threads));
    }
    const auto& bad = scans[which];
    for (size_t s = 0; s < bad.size() && s < inputs_.size(); ++s) {
      for (int64_t b : bad[s]) {
        for (int64_t k = 0; k < f.steps; ++k) rule_out(s, b - (f.offset + k) * r);
      }
    }
  }
  if (!statics_.empty()) {  // a bad static row rules out its whole series
    const auto bad = non_finite_steps(statics_, 1);
    for (int64_t s : bad[0]) {
      const int64_t first = index_.first_of(s);
      for (int64_t m = 0; m < index_.count_in_series(s); ++m) out.push_back(first + m);
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

int64_t Assembler::first_sample_of(int64_t series) const {
  if (series < 0 || series > static_cast<int64_t>(inputs_.size())) throw ArgumentError("no series " + std::to_string(series));
  const int64_t raw = index_.first_of(series);
  return raw - (std::lower_bound(excluded_.begin(), excluded_.end(), raw) - excluded_.begin());
}

int64_t Assembler::flat_start(int64_t sample) const {
  const SampleRef ref = index_.locate(raw_sample(sample));
  return series_offset_[static_cast<size_t>(ref.series)] + ref.start;
}

void Assembler::check_sample(const SampleRef& ref) const {
  const int64_t r = spec_.sampling_rate;
  for (const StepField& f : fields_) {
    require_finite(f.series[ref.series], "series", ref.series, ref.start + f.offset * r, f.steps, r, f.what);
  }
  if (!statics_.empty()) require_finite_row(statics_[0], ref.series, "the static features of series");
}

void Assembler::scale_window(const SampleRef& ref, Normalization& norm, std::byte* scale, std::byte* loc) const {
  // The window's inputs as doubles, then per element the statistics of its finite values.
  thread_local std::vector<double> values;
  const Series& x = inputs_[ref.series];
  const int64_t n = x.row_elems, w = spec_.window;
  values.resize(static_cast<size_t>(w * n));
  copy_window(x, ref.start, w, spec_.sampling_rate, reinterpret_cast<std::byte*>(values.data()), DType::Float64,
              Normalization{});
  norm.mean.assign(static_cast<size_t>(n), 0.0);
  norm.std.assign(static_cast<size_t>(n), 1.0);
  for (int64_t e = 0; e < n; ++e) {
    double sum = 0, count = 0;
    for (int64_t k = 0; k < w; ++k) {
      const double v = values[static_cast<size_t>(k * n + e)];
      if (!std::isfinite(v)) continue;
      sum += scaling_ == Scaling::Mean ? std::fabs(v) : v;
      count += 1;
    }
    double center = 0, spread = count > 0 ? sum / count : 0;
    if (scaling_ == Scaling::Standard) {
      center = spread;
      double squares = 0;
      for (int64_t k = 0; k < w; ++k) {
        const double v = values[static_cast<size_t>(k * n + e)];
        if (std::isfinite(v)) squares += (v - center) * (v - center);
      }
      spread = count > 0 ? std::sqrt(squares / count) : 0;
    }
    if (!(spread > 0) || !std::isfinite(spread)) spread = 1;
    norm.mean[static_cast<size_t>(e)] = center;
    norm.std[static_cast<size_t>(e)] = spread;
    reinterpret_cast<float*>(scale)[e] = static_cast<float>(spread);
    if (loc) reinterpret_cast<float*>(loc)[e] = static_cast<float>(center);
  }
}

void Assembler::fill_sample(int64_t sample, std::byte* const* dst) const {
  const SampleRef ref = index_.locate(raw_sample(sample));
  const int64_t r = spec_.sampling_rate;
  if (out_.check_finite) check_sample(ref);
  thread_local Normalization window_norm;
  if (scaling_ != Scaling::None) {
    scale_window(ref, window_norm, dst[scale_slot_], loc_slot_ >= 0 ? dst[loc_slot_] : nullptr);
  }
  for (const StepField& f : fields_) {
    const Series& series = f.series[ref.series];
    const int64_t first = ref.start + f.offset * r;
    copy_window(series, first, f.steps, r, dst[f.slot], f.dtype,
                f.scaled && scaling_ != Scaling::None ? window_norm : f.norm);
    if (out_.mask_non_finite) {
      mask_non_finite(series, first, f.steps, r, dst[f.slot], f.dtype,
                      f.observed >= 0 ? reinterpret_cast<bool*>(dst[f.observed]) : nullptr);
    }
  }
  if (static_slot_ >= 0) {
    convert_rows(statics_[0].row(ref.series), statics_[0].dtype, statics_[0].row_bytes(), 1, statics_[0].row_elems,
                 dst[static_slot_], out_.static_out.dtype, out_.static_out.norm);
    if (out_.mask_non_finite) mask_non_finite(statics_[0], ref.series, 1, 1, dst[static_slot_], out_.static_out.dtype, nullptr);
  }
  if (series_slot_ >= 0) {
    std::memcpy(dst[series_slot_], &ref.series, sizeof(int64_t));
    std::memcpy(dst[start_slot_], &ref.start, sizeof(int64_t));
  }
}

std::string Assembler::describe(int64_t sample) const {
  const SampleRef ref = index_.locate(raw_sample(sample));
  return "sample " + std::to_string(sample) + " (series " + std::to_string(ref.series) +
         ", steps from " + std::to_string(ref.start) + ")";
}

}  // namespace fastfeed
