// How one pass over whole sequences is cut into batches: plain, length-bucketed, by a token
// budget, or packed into rows (back to back, or best-fit).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "common/errors.hpp"
#include "order/order.hpp"

namespace fastfeed {

struct PadSpec {
  int64_t max_len = 0;       // > 0: every batch is max_len long, longer sequences truncated;
                             // with PackSpec::pack, the length of a packed row
  int64_t pad_multiple = 1;  // otherwise: the longest in the batch, rounded up to this
  bool pad_left = false;
  bool truncate_left = false;
  double pad_value = 0.0;

  void validate(bool pack) const {
    require_arg(max_len >= (pack ? 1 : 0), "PadSpec.max_len", pack ? ">= 1 with PackSpec.pack (the row length)" : ">= 0",
                max_len);
    require_arg(pad_multiple >= 1, "PadSpec.pad_multiple", ">= 1", pad_multiple);
  }
  // The steps a batch whose longest (kept) sequence has `longest` steps is padded to.
  int64_t padded_length(int64_t longest) const {
    return max_len > 0 ? max_len : (longest + pad_multiple - 1) / pad_multiple * pad_multiple;
  }
};

// How a pass's sequences become batches besides the order: length-sorted pools, a budget of
// padded steps per batch, or rows of PadSpec::max_len steps (see sequence_blocks.hpp).
struct PackSpec {
  bool bucket = false;
  int64_t bucket_pool = 1;  // batches per length-sorted pool (with batch_tokens: batch_tokens
                            // budgets' worth of steps); best_fit: rows' worth of steps per pool
  bool pack = false;
  bool best_fit = false;     // with pack: rows filled by best-fit decreasing length within pools
  int64_t batch_tokens = 0;  // > 0: padded batches of as many sequences as fit rows * length <= this

  void validate() const {
    require_arg(bucket_pool >= 1, "PackSpec.bucket_pool", ">= 1", bucket_pool);
    require_arg(batch_tokens >= 0, "PackSpec.batch_tokens", ">= 0 (0: batches of OrderSpec.batch_size)", batch_tokens);
    if (bucket && pack) throw ArgumentError("PackSpec.bucket and PackSpec.pack are alternatives: set one");
    if (best_fit && !pack) throw ArgumentError("PackSpec.best_fit needs PackSpec.pack");
    if (batch_tokens > 0 && pack) {
      throw ArgumentError("PackSpec.batch_tokens applies to padded batches: packed rows are all max_len long");
    }
  }
  // The number of batches (or rows) in a pass depends on the pass's order.
  bool varying() const { return batch_tokens > 0 || best_fit; }
};

// Salt for the key of the batch-order shuffle (bucketed and token-budget batches, best-fit
// rows), so it differs from the sequence shuffle. fastfeed.reference uses the same constant.
inline constexpr uint64_t kBatchOrderSalt = 0x9E3779B97F4A7C15ull;

// Steps [first, first + count) of sequence `seq` (an index into the plan's lengths).
struct PlanPiece {
  int64_t seq, first, count;
};

class PassPlan {
 public:
  // Rank order.rank's plan for pass `pass` over sequences of the given lengths.
  //  - Plain and bucketed: its share of the pass's sequences (positions rank, rank + world_size,
  //    ... of the pass's order; from order.offset_in(pass) on after an elastic resume), cut into
  //    batches; bucketed, sorted by length in pools of bucket_pool batches first, and the
  //    batches shuffled. A bucketed pass resumed elastically (order.resume_reads) shares what
  //    the earlier configurations left of it (unread_sequences) instead.
  //  - Token budget (pack.batch_tokens): the whole pass's order is cut greedily into batches of
  //    as many sequences as fit rows * padded length <= batch_tokens (at least one), within
  //    pools of bucket_pool budgets' worth of steps sorted by length with pack.bucket; with
  //    drop_last the last batch cut is dropped; bucketed batches are shuffled; the rank takes
  //    batches rank, rank + world_size, ... of the first world_size * (K / world_size) of the
  //    K batches (the K % world_size left over are in no rank's share).
  //  - Packed: its share of the rows of `max_len` steps the whole pass packs into (back to
  //    back: from row order.offset_in(pass) on after an elastic resume), back to back or (pack.best_fit) by best-fit decreasing length within pools of bucket_pool rows'
  //    worth of steps (see sequence_plan.cpp), the rows then shuffled with order.shuffle.
  static PassPlan build(const std::vector<int64_t>& lengths, const OrderSpec& order, const PackSpec& pack,
                        const PadSpec& pad, uint64_t pass);

  int64_t num_batches() const { return num_batches_; }
  // Token budget, packed: the batches (rows) the whole pass is cut into, over all ranks.
  int64_t pass_units() const { return units_; }

  // Padded plans (plain, bucketed, token budget): batch g holds sequences
  // seqs()[batch_start(g) .. batch_start(g+1)). A plain plan's seqs() is the rank's whole share:
  // with drop_last, those after the last full batch are in no batch of the pass, but virtual
  // epochs stream them.
  const std::vector<int64_t>& seqs() const { return seqs_; }
  int64_t batch_start(int64_t g) const { return starts_[static_cast<size_t>(g)]; }

  // Packed plans: this rank's rows (num_rows() of them); its batch g holds its rows
  // [g * B, (g + 1) * B). row_pieces(i, out) sets `out` to the pieces of row i, in order.
  int64_t num_rows() const { return rows_; }
  void row_pieces(int64_t i, std::vector<PlanPiece>& out) const;
  // Back-to-back packing: the pass's sequences laid end to end (seqs() in order); row r of
  // the pass holds stream steps [r * max_len, (r + 1) * max_len); this rank reads rows
  // pass_row(0), pass_row(1), ...
  int64_t total_steps() const { return cum_.empty() ? 0 : cum_.back(); }
  int64_t pass_row(int64_t i) const { return offset_ + i * world_ + rank_; }

 private:
  // Index into seqs() of the sequence holding stream step `pos`, skipping empty ones.
  int64_t piece_at(int64_t pos) const;

  std::vector<int64_t> seqs_;
  std::vector<int64_t> starts_;     // padded plans: num_batches + 1 entries
  std::vector<int64_t> cum_;        // back-to-back packing: steps before each sequence, plus the total
  std::vector<int64_t> row_start_;  // best-fit: this rank's rows as pieces_[row_start_[i] .. row_start_[i+1])
  std::vector<PlanPiece> pieces_;
  int64_t max_len_ = 0;
  int64_t rows_ = 0;  // this rank's
  int64_t rank_ = 0, world_ = 1;
  int64_t offset_ = 0;  // back-to-back packing: rows of the pass read before this run's share (elastic resume)
  int64_t num_batches_ = 0;
  int64_t units_ = 0;
};

// The sequences of pass `pass`, in the pass's order, that no rank of the bucketed configurations
// `reads` read: each read its first PassRead::batches bucketed batches of its share of what the
// ones before left (the share and batches order.rank's PassPlan would have with that world_size
// and batch_size). ArgumentError when a configuration claims more batches than it has.
std::vector<int64_t> unread_sequences(const std::vector<int64_t>& lengths, const OrderSpec& order,
                                      const PackSpec& pack, uint64_t pass, const std::vector<PassRead>& reads);

// How many sequences of a pass of `n` the bucketed configurations `reads` read (those
// unread_sequences leaves out), counted from the sizes of their batches alone: a state names them
// without sorting the pass. ArgumentError as unread_sequences.
int64_t sequences_read(int64_t n, const OrderSpec& order, uint64_t pass, const std::vector<PassRead>& reads);

// This rank's batches and items in each pass where they differ from pass to pass (token
// budgets, best-fit rows; items are the rows of a packed pass, or its batches): counted once a
// pass by building its plan, and kept (two integers a pass) for len() of each epoch and to find
// the batches of virtual epochs, which run on across passes. Thread-safe.
class PassSizes {
 public:
  PassSizes(std::vector<int64_t> lengths, const OrderSpec& order, const PackSpec& pack, const PadSpec& pad);

  int64_t batches(uint64_t pass) const;
  int64_t items(uint64_t pass) const;
  // The batches (rows) pass `pass` is cut into over all ranks (PassPlan::pass_units).
  int64_t units(uint64_t pass) const;
  // Where entry `index` of the stream of passes lies (pass 0's entries, then pass 1's, ...;
  // with virtual epochs resumed elastically, from the resumed pass's on, `index` counted from
  // the resume's step): entries are items (`by_items`) or batches. Every pass must hold at least one.
  StreamPosition locate(int64_t index, bool by_items) const;

 private:
  // With mu_ held: (items, batches) of one pass; the stream's first `k` + 1 passes counted in order.
  std::pair<int64_t, int64_t> count(uint64_t pass) const;
  void count_up_to(uint64_t k) const;

  std::vector<int64_t> lengths_;
  OrderSpec order_;
  PackSpec pack_;
  PadSpec pad_;
  mutable std::mutex mu_;
  // Per pass counted so far: this rank's items and batches, and their running totals (first 0).
  mutable std::vector<int64_t> items_, batches_, items_before_{0}, batches_before_{0};
  uint64_t base_ = 0;  // the stream's first pass (items_[i] is pass base_ + i's)
  mutable std::map<uint64_t, std::pair<int64_t, int64_t>> counted_;  // passes asked for alone (len())
  mutable std::map<uint64_t, int64_t> units_;
};

}  // namespace fastfeed
