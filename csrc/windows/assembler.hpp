// Writes samples (windows and their targets) into output buffers, converting as it goes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
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

class Assembler {
 public:
  // `targets` is empty (no targets) or holds one series per input series, aligned step for step.
  // Of `out`, the dtypes, normalisations and check_finite apply here; its feature shapes give
  // the blocks' shapes (window_blocks.hpp).
  Assembler(std::vector<Series> inputs, std::vector<Series> targets, const WindowSpec& spec,
            OutputSpec out);

  // Samples left after exclude_touching(): all of the index's samples unless some were dropped.
  int64_t num_samples() const { return index_.size() - static_cast<int64_t>(excluded_.size()); }
  int64_t num_excluded() const { return static_cast<int64_t>(excluded_.size()); }
  // What the ranks share out of one pass (see epoch_sizes.hpp): the samples left.
  int64_t units() const { return num_samples(); }
  int64_t span() const { return spec_.span(); }

  // Drops every sample whose inputs touch a step of `bad_inputs[s]` or whose targets touch a
  // step of `bad_targets[s]` (series s). Samples are renumbered densely. Call before use.
  void exclude_touching(const std::vector<std::vector<int64_t>>& bad_inputs,
                        const std::vector<std::vector<int64_t>>& bad_targets);
  bool has_targets() const { return spec_.horizon > 0; }
  size_t x_sample_bytes() const { return x_sample_bytes_; }
  size_t y_sample_bytes() const { return y_sample_bytes_; }
  const SampleIndex& index() const { return index_; }
  DType x_dtype() const { return out_.x_dtype; }
  DType y_dtype() const { return out_.y_dtype; }
  const OutputSpec& output() const { return out_; }

  // Where sample `sample` starts if all series lay back to back: the step number of its first
  // input in the concatenation (for sources kept whole on a GPU, see window_blocks.hpp).
  int64_t flat_start(int64_t sample) const;

  // Writes sample number `sample` (of the samples left) to `x` (and its targets to `y` when there are targets).
  void fill_sample(int64_t sample, std::byte* x, std::byte* y) const;

  // What happened to a memory-mapped source file during the epoch, or "" (see file_watch.hpp).
  std::string file_problem() const { return watch_.problem(); }
  const FileWatch& files() const { return watch_; }

  // A human-readable location of a sample, for error messages.
  std::string describe(int64_t sample) const;

 private:
  static std::vector<int64_t> lengths_of(const std::vector<Series>& series);

  std::vector<Series> inputs_;
  std::vector<Series> targets_;
  FileWatch watch_{{}};
  WindowSpec spec_;
  OutputSpec out_;
  SampleIndex index_;
  std::vector<int64_t> series_offset_;  // steps before each series in the concatenation
  // Sorted numbers (in the index) of excluded samples; sample k is the k-th one not in it.
  std::vector<int64_t> excluded_;
  int64_t raw_sample(int64_t sample) const;
  size_t x_sample_bytes_ = 0;
  size_t y_sample_bytes_ = 0;
};

}  // namespace fastfeed
