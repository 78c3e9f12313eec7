#include "sequences/sequence_data.hpp"

#include <string>

#include "common/errors.hpp"

namespace fastfeed {

std::shared_ptr<SequenceData> SequenceData::make(std::vector<Series> inputs, std::vector<Series> step_targets,
                                                 Series labels, std::vector<int64_t> keep, Series statics) {
  const auto n = static_cast<int64_t>(inputs.size());
  for (int64_t k : keep) {
    if (k < 0 || k >= n) throw ArgumentError("keep: no sequence " + std::to_string(k));
  }
  // Python checks these first, with friendlier words; here they guard the reads.
  if (!step_targets.empty() && labels.data != nullptr) {
    throw ArgumentError("step targets and labels are alternatives: a batch has one y");
  }
  if (!step_targets.empty()) {
    if (static_cast<int64_t>(step_targets.size()) != n) {
      throw ArgumentError("step targets must hold one sequence per input sequence (" + std::to_string(n) + "), got " +
                          std::to_string(step_targets.size()));
    }
    for (int64_t i = 0; i < n; ++i) {
      if (step_targets[i].length < inputs[i].length) {
        throw ArgumentError("step targets of sequence " + std::to_string(i) + " have " +
                            std::to_string(step_targets[i].length) + " steps, the sequence has " +
                            std::to_string(inputs[i].length));
      }
    }
  }
  if (labels.data != nullptr && labels.length < n) {
    throw ArgumentError("labels have " + std::to_string(labels.length) + " rows for " + std::to_string(n) +
                        " sequences");
  }
  if (statics.data != nullptr && statics.length != n) {
    throw ArgumentError("static has " + std::to_string(statics.length) + " rows, but there are " + std::to_string(n) +
                        " sequences (one row per sequence)");
  }
  auto d = std::make_shared<SequenceData>();
  d->statics = std::move(statics);
  d->inputs = std::move(inputs);
  d->step_targets = std::move(step_targets);
  d->labels = std::move(labels);
  d->keep = std::move(keep);
  std::vector<std::shared_ptr<const MappedFile>> files;
  for (const auto* list : {&d->inputs, &d->step_targets}) {
    for (const auto& f : files_of(*list)) files.push_back(f);
  }
  if (d->labels.file) files.push_back(d->labels.file);
  if (d->statics.file) files.push_back(d->statics.file);
  d->watch = FileWatch(std::move(files));
  return d;
}

std::vector<int64_t> SequenceData::lengths() const {
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(count()));
  for (int64_t v = 0; v < count(); ++v) out.push_back(inputs[static_cast<size_t>(real(v))].length);
  return out;
}

int64_t SequenceData::total_steps() const {
  int64_t total = 0;
  for (int64_t v = 0; v < count(); ++v) total += inputs[static_cast<size_t>(real(v))].length;
  return total;
}

int64_t SequenceData::units(bool pack, int64_t max_len) const {
  if (!pack) return count();
  require_arg(max_len >= 1, "max_len (the packed row length)", ">= 1", max_len);
  return (total_steps() + max_len - 1) / max_len;
}

}  // namespace fastfeed
