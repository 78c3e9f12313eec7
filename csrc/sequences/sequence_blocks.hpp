// Batches of whole sequences, padded (with masks and lengths) or packed into rows.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string_view>
#include <utility>
#include <vector>

#include "common/errors.hpp"
#include "order/epoch_sizes.hpp"
#include "order/mix_order.hpp"
#include "order/order.hpp"
#include "pipeline/block.hpp"
#include "pipeline/buffer_pool.hpp"
#include "pipeline/output_spec.hpp"
#include "pipeline/run_spec.hpp"
#include "sequences/sequence_data.hpp"
#include "sequences/sequence_plan.hpp"
#include "source/convert.hpp"
#include "source/series.hpp"

namespace fastfeed {

// Where the steps of a batch's rows come from: pieces of sequences placed at (row, col).
struct Piece {
  int64_t row, col, seq, first, count, segment;  // seq: index into SequenceData::inputs
};
struct BatchLayout {
  int64_t rows = 0, length = 0;  // the batch is rows x length steps
  std::vector<Piece> pieces;     // in row order; padded batches have one per row
  std::vector<int64_t> row_lengths;
  std::vector<int32_t> cu_seqlens;  // packed batches: 0, then the end of each piece
  std::vector<int64_t> components;  // a mixture's batches: each row's component
};

class SequenceBlocks : public BlockBuilder {
 public:
  // Rank order.rank's batches [run.first_batch, end of epoch run.epoch), one batch a block
  // (their lengths differ: run.batches_per_block does not apply). Of `out`, y_norm is unused:
  // step targets and labels are never normalised. With run.indices_only a batch carries the
  // pieces of its rows (fields.hpp) and a GPU that holds the source copies the steps. Where the
  // number of batches differs from pass to pass (pack.varying()), `passes` counts them (one
  // shared by the runs of a Feeder keeps its counts); without one the builder makes its own.
  SequenceBlocks(std::shared_ptr<const SequenceData> data, const OrderSpec& order, const PackSpec& pack,
                 const PadSpec& pad, OutputSpec out, const RunSpec& run, std::shared_ptr<const MixOrder> mix = nullptr,
                 std::shared_ptr<const PassSizes> passes = nullptr);

  int64_t num_blocks() const override { return sizes_.batches_per_epoch - run_.first_batch; }
  Block build(int64_t k) const override;

  const EpochSizes& sizes() const { return sizes_; }

 private:
  std::shared_ptr<const PassPlan> plan_for(uint64_t pass) const;
  // Where batch `batch` of the run's epoch comes from: a batch of one pass's plan, or, in virtual
  // epochs of plain or packed sequences, the next batch_size items of the stream of passes.
  BatchLayout layout_of(int64_t batch) const;
  // A padded batch of these sequences (indices into lengths_).
  BatchLayout padded_layout(const int64_t* seqs, int64_t count) const;
  // A packed batch of these rows: (plan, row of this rank's share of its pass) each.
  BatchLayout packed_layout(const std::vector<std::pair<const PassPlan*, int64_t>>& rows) const;
  // The batch's fields on the host: steps copied and converted, padding, masks, ids.
  void fill(const BatchLayout& layout, Block& b) const;
  // The batch as pieces, for a GPU that holds the source (RunSpec::indices_only).
  void fill_pieces(const BatchLayout& layout, Block& b) const;
  // Lengths and cu_seqlens: the parts of a batch that are the same on host and GPU.
  void add_row_info(const BatchLayout& layout, Block& b) const;
  // The labels field, when the sequences have labels (its rows are filled by fill_labels).
  std::byte* add_labels(const BatchLayout& layout, Block& b) const;
  void fill_labels(const BatchLayout& layout, std::byte* dst, Block& b) const;
  // The fields with one row per sequence beside labels: static features and the index.
  void add_row_fields(const BatchLayout& layout, Block& b) const;
  // Writes `count` steps of `s` from `start` at `dst`, converted; checks them when asked, or
  // with check_finite="mask" writes 0 for NaN/Inf and marks the finite values in `observed`.
  void copy_steps(const Series& s, int64_t seq, int64_t start, int64_t count, std::byte* dst,
                  DType dtype, const Normalization& norm, const char* what, bool* observed) const;
  void fill_padding(std::byte* dst, int64_t steps, const std::vector<std::byte>& pad_row) const;
  // Sets field `name` of `b` to a pooled buffer of `shape` elements of `dtype`; returns the data.
  std::byte* add(Block& b, std::string_view name, DType dtype, std::vector<int64_t> shape, bool per_row = true) const;

  // A mixture's padded batch: the sequences of its stream positions (order.steps_per_epoch set).
  BatchLayout mixed_layout(int64_t batch) const;

  std::shared_ptr<const SequenceData> data_;
  std::shared_ptr<const MixOrder> mix_;
  std::vector<int64_t> lengths_;
  OrderSpec order_;
  PackSpec pack_;
  PadSpec pad_;
  OutputSpec out_;
  RunSpec run_;
  EpochSizes sizes_;
  int64_t units_ = 0;                        // what the ranks share out of a pass (SequenceData::units)
  std::shared_ptr<const PassSizes> passes_;  // with pack_.varying()
  int64_t items_per_pass_ = 0;  // sequences (plain) or rows (packed) in this rank's share of a pass
  bool streamed_ = false;       // virtual epochs cut batches from the stream of items (see layout_of)
  bool equal_shares_ = false;   // streamed padded sequences: every rank n / world_size of each pass
  int64_t first_pass_ = 0;      // streamed: this rank's items of the first pass (of an elastic resume's)
  int64_t per_pass_ = 0;        // streamed: this rank's items of every other pass
  std::vector<std::byte> x_pad_row_, y_pad_row_;
  std::shared_ptr<BufferPool> pool_;

  mutable std::mutex plans_mu_;
  mutable std::map<uint64_t, std::shared_ptr<const PassPlan>> plans_;
};

}  // namespace fastfeed
