// How one pass over whole sequences is cut into batches: plain, length-bucketed, or packed.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/errors.hpp"
#include "order/order.hpp"

namespace fastfeed {

// How a pass's sequences become batches besides the order: length-sorted pools, or rows of
// PadSpec::max_len steps filled back to back (see sequence_blocks.hpp).
struct PackSpec {
  bool bucket = false;
  int64_t bucket_pool = 1;  // batches per length-sorted pool
  bool pack = false;

  void validate() const {
    require_arg(bucket_pool >= 1, "PackSpec.bucket_pool", ">= 1", bucket_pool);
    if (bucket && pack) throw ArgumentError("PackSpec.bucket and PackSpec.pack are alternatives: set one");
  }
};

// Salt for the key of the batch-order shuffle, so it differs from the sequence shuffle.
// fastfeed.reference uses the same constant.
inline constexpr uint64_t kBatchOrderSalt = 0x9E3779B97F4A7C15ull;

class PassPlan {
 public:
  // Rank order.rank's plan for pass `pass` over sequences of the given lengths. Plain and
  // bucketed: its share of the pass's sequences (positions rank, rank + world_size, ... of the
  // pass's order), cut into batches. Packed: its share of the rows of `max_len` steps the
  // whole pass packs into.
  static PassPlan build(const std::vector<int64_t>& lengths, const OrderSpec& order, const PackSpec& pack,
                        int64_t max_len, uint64_t pass);

  int64_t num_batches() const { return num_batches_; }

  // Plain and bucketed plans: batch g holds sequences seqs()[batch_start(g) .. batch_start(g+1)).
  // A plain plan's seqs() is the rank's whole share: with drop_last, those after the last full
  // batch are in no batch of the pass, but virtual epochs stream them.
  const std::vector<int64_t>& seqs() const { return seqs_; }
  int64_t batch_start(int64_t g) const { return starts_[static_cast<size_t>(g)]; }

  // Packed plans: the pass's sequences back to back (seqs() in order); row r of the pass holds
  // stream steps [r * max_len, (r + 1) * max_len). This rank reads rows pass_row(0), pass_row(1),
  // ... (num_rows() of them); its batch g holds its rows [g * B, (g + 1) * B).
  int64_t total_steps() const { return cum_.empty() ? 0 : cum_.back(); }
  int64_t num_rows() const { return rows_; }
  int64_t pass_row(int64_t i) const { return i * world_ + rank_; }
  // Index into seqs() of the sequence holding stream step `pos`, skipping empty ones.
  int64_t piece_at(int64_t pos) const;
  int64_t steps_before(int64_t i) const { return cum_[static_cast<size_t>(i)]; }

 private:
  std::vector<int64_t> seqs_;
  std::vector<int64_t> starts_;  // plain/bucket: num_batches + 1 entries
  std::vector<int64_t> cum_;     // pack: steps before each sequence, plus the total
  int64_t rows_ = 0;  // this rank's
  int64_t rank_ = 0, world_ = 1;
  int64_t num_batches_ = 0;
};

}  // namespace fastfeed
