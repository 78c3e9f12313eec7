// Batches of whole sequences, padded (with masks and lengths) or packed into rows.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "block.hpp"
#include "buffer_pool.hpp"
#include "convert.hpp"
#include "file_watch.hpp"
#include "order.hpp"
#include "sequence_plan.hpp"
#include "series.hpp"

namespace fastfeed {

struct SequenceData {
  std::vector<Series> inputs;        // one per sequence
  std::vector<Series> step_targets;  // empty, or one per sequence, aligned step for step
  Series labels;                     // one row per sequence; labels.data == nullptr: none
  std::vector<int64_t> keep;         // the sequences fed (check_finite="skip"); empty: all
  FileWatch watch{{}};               // the maps behind all of them
  bool has_labels() const { return labels.data != nullptr; }
  int64_t count() const { return keep.empty() ? static_cast<int64_t>(inputs.size()) : static_cast<int64_t>(keep.size()); }
  // The sequence number in `inputs` of the v-th sequence fed.
  int64_t real(int64_t v) const { return keep.empty() ? v : keep[static_cast<size_t>(v)]; }
};

struct PadSpec {
  int64_t max_len = 0;       // > 0: every batch is max_len long, longer sequences truncated
  int64_t pad_multiple = 1;  // otherwise: the longest in the batch, rounded up to this
  bool pad_left = false;
  bool truncate_left = false;
  double pad_value = 0.0;
};

struct SequenceOutput {
  DType x_dtype = DType::Float32;
  DType y_dtype = DType::Float32;
  Normalization x_norm;
  bool check_finite = false;
  std::vector<int64_t> x_feat, y_feat;
  // device_cache: a batch says where each piece of its rows comes from (Output::X holds an
  // int64 row (row, col, sequence, first step, steps, segment) per piece) and a GPU copies
  // the steps; lengths, labels and cu_seqlens come as usual.
  bool pieces_only = false;
};

// Where the steps of a batch's rows come from: pieces of sequences placed at (row, col).
struct Piece {
  int64_t row, col, seq, first, count, segment;  // seq: index into SequenceData::inputs
};
struct BatchLayout {
  int64_t rows = 0, length = 0;  // the batch is rows x length steps
  std::vector<Piece> pieces;     // in row order; padded batches have one per row
  std::vector<int64_t> row_lengths;
  std::vector<int32_t> cu_seqlens;  // packed batches: 0, then the end of each piece
};

class SequenceBlocks : public BlockBuilder {
 public:
  SequenceBlocks(std::shared_ptr<const SequenceData> data, PlanSpec plan, PadSpec pad,
                 SequenceOutput out, int64_t rank, int64_t world, RunSpec run, size_t max_idle,
                 bool pinned = false);

  int64_t num_blocks() const override { return run_.end_batch - run_.first_batch; }
  Block build(int64_t k) const override;

  // Batches one rank receives per pass (also the length of an epoch without virtual epochs).
  int64_t batches_per_rank() const { return per_rank_; }

 private:
  std::shared_ptr<const PassPlan> plan_for(uint64_t pass) const;
  // Where batch `batch` of the run's epoch comes from: a batch of one pass's plan, or, in virtual
  // epochs of plain or packed sequences, the next batch_size items of the stream of passes.
  BatchLayout layout_of(int64_t batch) const;
  // A padded batch of these sequences (indices into lengths_).
  BatchLayout padded_layout(const int64_t* seqs, int64_t count) const;
  // A packed batch of these rows: (plan, row of its pass) each.
  BatchLayout packed_layout(const std::vector<std::pair<const PassPlan*, int64_t>>& rows) const;
  // The batch's arrays on the host: steps copied and converted, padding, masks, ids.
  void fill(const BatchLayout& layout, Block& b) const;
  // The batch as pieces, for a GPU that holds the source (SequenceOutput::pieces_only).
  void fill_pieces(const BatchLayout& layout, Block& b) const;
  void fill_row_info(const BatchLayout& layout, Block& b) const;
  // Writes `count` steps of `s` from `start` at `dst`, converted; checks them when asked.
  void copy_steps(const Series& s, int64_t seq, int64_t start, int64_t count, std::byte* dst,
                  DType dtype, const Normalization& norm, const char* what) const;
  void fill_padding(std::byte* dst, int64_t steps, const std::vector<std::byte>& pad_row) const;
  Array make_array(BufferPool& pool, DType dtype, std::vector<int64_t> shape) const;

  std::shared_ptr<const SequenceData> data_;
  std::vector<int64_t> lengths_;
  PlanSpec plan_spec_;
  PadSpec pad_;
  SequenceOutput out_;
  RunSpec run_;
  int64_t per_rank_ = 0;  // batches in this rank's share of a pass
  int64_t items_per_pass_ = 0;  // sequences (plain) or rows (packed) in this rank's share of a pass
  bool streamed_ = false;       // virtual epochs cut batches from the stream of items (see layout_of)
  std::vector<std::byte> x_pad_row_, y_pad_row_;
  std::shared_ptr<BufferPool> pool_;

  mutable std::mutex plans_mu_;
  mutable std::map<uint64_t, std::shared_ptr<const PassPlan>> plans_;
};

}  // namespace fastfeed
