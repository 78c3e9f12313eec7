// Whole sequences as the core reads them: inputs, step targets or labels, and which are fed.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "source/file_watch.hpp"
#include "source/series.hpp"

namespace fastfeed {

struct SequenceData {
  std::vector<Series> inputs;        // one per sequence
  std::vector<Series> step_targets;  // empty, or one per sequence, aligned step for step
  Series labels;                     // one row per sequence; labels.data == nullptr: none
  Series statics;                    // static features, one row per sequence; data == nullptr: none
  std::vector<int64_t> keep;         // the sequences fed (check_finite="skip"); empty: all
  FileWatch watch{{}};               // the maps behind all of them

  // Checks the parts fit together (every keep index names a sequence; step targets and labels
  // cover every sequence) and watches the files behind them. `labels` without data: none.
  static std::shared_ptr<SequenceData> make(std::vector<Series> inputs, std::vector<Series> step_targets,
                                            Series labels, std::vector<int64_t> keep, Series statics = {});

  bool has_labels() const { return labels.data != nullptr; }
  bool has_statics() const { return statics.data != nullptr; }
  // Sequences fed.
  int64_t count() const { return keep.empty() ? static_cast<int64_t>(inputs.size()) : static_cast<int64_t>(keep.size()); }
  // The sequence number in `inputs` of the v-th sequence fed.
  int64_t real(int64_t v) const { return keep.empty() ? v : keep[static_cast<size_t>(v)]; }
  // The lengths of the sequences fed, in feeding order, and their sum.
  std::vector<int64_t> lengths() const;
  int64_t total_steps() const;
  // What the ranks share out of one pass (see epoch_sizes.hpp): the sequences fed, or with
  // `pack` the rows of `max_len` steps they fill back to back.
  int64_t units(bool pack, int64_t max_len) const;
};

}  // namespace fastfeed
