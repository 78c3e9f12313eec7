// Writes samples (windows, their targets and the fields beside them) into output buffers,
// converting as it goes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/dtype.hpp"
#include "pipeline/output_spec.hpp"
#include "source/convert.hpp"
#include "source/file_watch.hpp"
#include "source/series.hpp"
#include "windows/window.hpp"

namespace fastfeed {

// Copies `window` steps of `series` taken every `rate` steps from `start` into `dst`
// (contiguous), converting to `dst_type`. Shared by the Feeder and the Keras-compatible path.
void copy_window(const Series& series, int64_t start, int64_t window, int64_t rate,
                 std::byte* dst, DType dst_type, const Normalization& norm);

// Windows starting at each of `starts[0..n)`, written one after another at `dst`.
// Throws ArgumentError naming the first start whose window leaves the series.
void gather_windows(const Series& series, const int64_t* starts, int64_t n, int64_t window,
                    int64_t rate, std::byte* dst, DType dst_type);

// Per-window scaling of the inputs and of targets taken from them (scale=).
enum class Scaling { None, Mean, Standard };

// The optional fields of a window sample beyond x and y (forecasting models read them).
struct WindowExtras {
  std::vector<Series> covariates;  // aligned with the inputs; the window's own steps
  FieldOutput covariates_out;
  std::vector<Series> known;  // aligned with the inputs; the window's steps and every step to its last target
  FieldOutput known_out;
  std::vector<Series> statics;  // empty, or one series whose row s describes series s (OutputSpec::static_out)
  Scaling scaling = Scaling::None;
};

// One array of a block: its name, element type and shape after the rows axis.
struct FieldLayout {
  std::string name;
  DType dtype = DType::Float32;
  std::vector<int64_t> tail;
  size_t sample_bytes = 0;
};

class Assembler {
 public:
  // `targets` is empty (targets are read from nowhere: none, or the spec has none) or holds one
  // series per input series, aligned step for step. Of `out`, the dtypes, normalisations and
  // NaN/Inf handling apply here; its feature shapes give the blocks' shapes.
  Assembler(std::vector<Series> inputs, std::vector<Series> targets, const WindowSpec& spec, OutputSpec out,
            WindowExtras extras = {});

  // Samples left after exclude_non_finite(): all of the index's samples unless some were dropped.
  int64_t num_samples() const { return index_.size() - static_cast<int64_t>(excluded_.size()); }
  int64_t num_excluded() const { return static_cast<int64_t>(excluded_.size()); }
  // What the ranks share out of one pass (see epoch_sizes.hpp): the samples left.
  int64_t units() const { return num_samples(); }
  int64_t span() const { return spec_.span(); }

  // Drops every sample that reads a NaN or Inf in any of its fields (check_finite="skip"),
  // found by one scan of the data with `threads` threads. Samples are renumbered densely.
  // Call before use.
  void exclude_non_finite(int threads);
  bool has_targets() const { return spec_.has_targets(); }
  // The arrays a sample fills, in the order fill_sample takes their destinations: x first,
  // then y with targets, then the optional fields.
  const std::vector<FieldLayout>& layouts() const { return layouts_; }
  size_t x_sample_bytes() const { return layouts_[0].sample_bytes; }
  const SampleIndex& index() const { return index_; }
  DType x_dtype() const { return out_.x_dtype; }
  DType y_dtype() const { return out_.y_dtype; }
  const OutputSpec& output() const { return out_; }

  // Where sample `sample` starts if all series lay back to back: the step number of its first
  // input in the concatenation (for sources kept whole on a GPU, see window_blocks.hpp).
  int64_t flat_start(int64_t sample) const;
  // The number (of the samples left) of series `series`'s first sample; series == the number of
  // series gives num_samples(). A mixture's components are ranges of series.
  int64_t first_sample_of(int64_t series) const;

  // Writes sample number `sample` (of the samples left): its layouts()[i] goes to `dst[i]`.
  void fill_sample(int64_t sample, std::byte* const* dst) const;

  // What happened to a memory-mapped source file during the epoch, or "" (see file_watch.hpp).
  std::string file_problem() const { return watch_.problem(); }
  const FileWatch& files() const { return watch_; }

  // A human-readable location of a sample, for error messages.
  std::string describe(int64_t sample) const;

 private:
  // A field read step by step from series aligned with the inputs (x, y, covariates, known).
  struct StepField {
    std::vector<Series> series;
    int64_t offset = 0;  // first step read, in sampling steps after the window's first input
    int64_t steps = 0;
    DType dtype = DType::Float32;
    Normalization norm;
    bool scaled = false;   // transformed by the window's own loc and scale
    int slot = 0;          // its layout
    int observed = -1;     // with check_finite="mask": the layout of its observed mask, or -1
    const char* what = "";  // "the inputs", ... for messages
  };

  static std::vector<int64_t> lengths_of(const std::vector<Series>& series);
  void check_aligned(const std::vector<Series>& field, const char* name) const;
  int add_layout(std::string name, DType dtype, std::vector<int64_t> tail);
  void add_step_field(std::vector<Series> series, int64_t offset, int64_t steps, const FieldOutput& out,
                      bool scaled, std::string_view name, std::string_view observed, const char* what);
  int64_t raw_sample(int64_t sample) const;
  void check_sample(const SampleRef& ref) const;
  void scale_window(const SampleRef& ref, Normalization& norm, std::byte* scale, std::byte* loc) const;

  std::vector<Series> inputs_;
  FileWatch watch_{{}};
  WindowSpec spec_;
  OutputSpec out_;
  SampleIndex index_;
  std::vector<StepField> fields_;  // x first
  std::vector<FieldLayout> layouts_;
  std::vector<Series> statics_;
  int static_slot_ = -1, series_slot_ = -1, start_slot_ = -1, scale_slot_ = -1, loc_slot_ = -1;
  Scaling scaling_ = Scaling::None;
  std::vector<int64_t> series_offset_;  // steps before each series in the concatenation
  // Sorted numbers (in the index) of excluded samples; sample k is the k-th one not in it.
  std::vector<int64_t> excluded_;
};

}  // namespace fastfeed
