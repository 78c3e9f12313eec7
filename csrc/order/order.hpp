// Which sample a rank reads at each position of a pass over the data.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "common/errors.hpp"
#include "order/permutation.hpp"

namespace fastfeed {

// The batches each rank of an earlier configuration read of an elastically resumed pass. Bucketed
// batches are cut from each rank's own length-sorted share, so what those ranks read is no prefix
// of the pass's order: the rest of the pass is what they left (see unread_sequences).
struct PassRead {
  int64_t world_size = 1;
  int64_t batch_size = 1;
  int64_t batches = 0;  // read by every rank of that configuration
};

// The order of a run's items (samples, sequences or packed rows): shuffling, the rank's share,
// batching and virtual epochs. One pass is a permutation of all items (keyed by the pass number
// when shuffled); rank r of world_size reads the pass's positions r, r + world_size, ...
struct OrderSpec {
  bool shuffle = false;
  uint64_t seed = 0;
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t batch_size = 1;
  bool drop_last = false;
  int64_t steps_per_epoch = 0;  // > 0: virtual epochs; the stream of passes runs on across them
  // Elastic resume (a state saved with another world_size or batch_size): this run's stream
  // takes over another configuration's at position `resume_offset` of pass `resume_pass`
  // (counted over all ranks): the ranks share the rest of that pass, then go on as usual. It
  // does so at step `resume_step` of this run's own numbering: the epoch, or with virtual epochs
  // epoch * steps_per_epoch + batch. -1: no such point.
  int64_t resume_step = -1;
  int64_t resume_pass = 0;
  int64_t resume_offset = 0;
  // Bucketed sequences: what the configurations before read of pass resume_pass, in turn (each
  // from what the ones before it left); resume_offset is then the number of sequences they read.
  std::vector<PassRead> resume_reads;

  // Whether this run takes over another configuration's stream inside pass `pass`.
  bool resumes_in(uint64_t pass) const { return resume_step >= 0 && pass == static_cast<uint64_t>(resume_pass); }
  // Positions of pass `pass` read before this run's share of it starts (all ranks together).
  int64_t offset_in(uint64_t pass) const { return resumes_in(pass) ? resume_offset : 0; }

  void validate() const {
    require_arg(batch_size >= 1, "OrderSpec.batch_size", ">= 1", batch_size);
    require_arg(world_size >= 1, "OrderSpec.world_size", ">= 1", world_size);
    if (rank < 0 || rank >= world_size) {
      throw ArgumentError("OrderSpec.rank must be in [0, world_size=" + std::to_string(world_size) + "), got " +
                          std::to_string(rank));
    }
    require_arg(steps_per_epoch >= 0, "OrderSpec.steps_per_epoch", ">= 0 (0: an epoch is a pass)", steps_per_epoch);
    require_arg(resume_offset >= 0, "OrderSpec.resume_offset", ">= 0", resume_offset);
    require_arg(resume_pass >= 0, "OrderSpec.resume_pass", ">= 0", resume_pass);
    for (const PassRead& r : resume_reads) {
      require_arg(r.world_size >= 1, "OrderSpec.resume_reads world_size", ">= 1", r.world_size);
      require_arg(r.batch_size >= 1, "OrderSpec.resume_reads batch_size", ">= 1", r.batch_size);
      require_arg(r.batches >= 0, "OrderSpec.resume_reads batches", ">= 0", r.batches);
    }
  }
};

// How many batches of `B` a share of `items` is cut into: a short last one is dropped with
// drop_last. (Written without items + B - 1, which overflows for a huge B read from a state.)
inline int64_t batch_count(int64_t items, int64_t B, bool drop_last) {
  return items / B + (!drop_last && items % B != 0 ? 1 : 0);
}

// How many of a pass's `n` items rank `rank` of `world` reads. Shares are disjoint and give
// every rank the same number of batches: the n % world items left over when the pass is dealt
// out evenly go one each to the first ranks where that only lengthens their last batch (their
// share is not a whole number of `unit`-item batches), and are left out of the pass otherwise
// (and always with drop_last). `unit` is the batch size: the items (samples, sequences or
// packed rows) are cut into batches of that many.
inline int64_t rank_share_size(int64_t n, int64_t rank, int64_t world, int64_t unit, bool drop_last) {
  const int64_t even = n / world;
  const bool rest_fits = !drop_last && even % unit != 0;
  return even + (rest_fits && rank < n % world ? 1 : 0);
}

// How many of pass `pass`'s `n` items rank order.rank reads: its share of what the pass has
// left after an elastic resume's offset (of all of them otherwise).
inline int64_t pass_share_size(const OrderSpec& order, int64_t n, uint64_t pass) {
  const int64_t left = std::max<int64_t>(0, n - order.offset_in(pass));
  return rank_share_size(left, order.rank, order.world_size, order.batch_size, order.drop_last);
}

// How many batches rank order.rank cuts from its share of pass `pass` (pass_share_size): a
// short last one is dropped with drop_last.
inline int64_t pass_batches(const OrderSpec& order, int64_t n, uint64_t pass) {
  return batch_count(pass_share_size(order, n, pass), order.batch_size, order.drop_last);
}

// Virtual epochs of samples stream every rank through its share of pass after pass: all ranks
// take the same number from each pass (the n % world_size left over sit it out), so that they
// cross from one pass to the next together and a saved state names one point for them all.
inline int64_t stream_share_size(const OrderSpec& order, int64_t n, uint64_t pass) {
  return std::max<int64_t>(0, n - order.offset_in(pass)) / order.world_size;
}

// Rank order.rank's share of pass `pass` over `n` items: pass_share_size() of them, at
// positions offset + rank, offset + rank + world_size, ...
class PassOrder {
 public:
  PassOrder(const OrderSpec& order, int64_t n, uint64_t pass)
      : shuffle_(order.shuffle),
        rank_(order.rank),
        world_(order.world_size),
        offset_(order.offset_in(pass)),
        size_(pass_share_size(order, n, pass)),
        perm_(static_cast<uint64_t>(n), order.seed, pass) {}

  int64_t size() const { return size_; }
  // The item at position `q` (0 <= q < size()) of this rank's share of the pass.
  int64_t sample_at(int64_t q) const {
    const int64_t global = offset_ + q * world_ + rank_;
    return shuffle_ ? static_cast<int64_t>(perm_(static_cast<uint64_t>(global))) : global;
  }

 private:
  bool shuffle_;
  int64_t rank_, world_, offset_, size_;
  Permutation perm_;
};

struct StreamPosition {
  uint64_t pass;
  int64_t index;  // within the pass
};

// Where item `index` of epoch `epoch` lies, for passes of `per_pass` items and epochs of
// `per_epoch` items (an item is a sample or a batch). Without virtual epochs, epoch = pass.
inline StreamPosition locate_in_stream(const OrderSpec& order, int64_t epoch, int64_t index, int64_t per_epoch,
                                       int64_t per_pass) {
  if (order.steps_per_epoch <= 0) return {static_cast<uint64_t>(epoch), index};
  const int64_t s = epoch * per_epoch + index;
  return {static_cast<uint64_t>(s / per_pass), s % per_pass};
}

// Where entry `t` of a stream that took over another configuration's at an elastic resume lies:
// `first` entries of the resumed pass, then `per_pass` of each pass after it.
inline StreamPosition locate_after_resume(const OrderSpec& order, int64_t t, int64_t first, int64_t per_pass) {
  const auto pass = static_cast<uint64_t>(order.resume_pass);
  if (t < first) return {pass, t};
  return {pass + 1 + static_cast<uint64_t>((t - first) / per_pass), (t - first) % per_pass};
}

// The same for a stream of samples that may take over another configuration's at an elastic
// resume (OrderSpec::resume_step): from there, this rank reads `first_pass` items of the
// resumed pass (pass_share_size), then `per_pass` of each pass after it.
inline StreamPosition locate_sample(const OrderSpec& order, int64_t epoch, int64_t index, int64_t per_pass,
                                    int64_t first_pass) {
  const int64_t B = order.batch_size;
  if (order.resume_step < 0) return locate_in_stream(order, epoch, index, order.steps_per_epoch * B, per_pass);
  if (order.steps_per_epoch <= 0) return {static_cast<uint64_t>(epoch), index};  // the resumed epoch is its pass
  const int64_t t = epoch * order.steps_per_epoch * B + index - order.resume_step * B;
  return locate_after_resume(order, t, first_pass, per_pass);
}

// Where batch `batch` of epoch `epoch` lies when each pass of `n` items is cut into this rank's
// own batches (pass_batches: bucketed sequences), an elastic resume's pass into what it has left.
inline StreamPosition locate_batch(const OrderSpec& order, int64_t epoch, int64_t batch, int64_t n) {
  const auto resumed = static_cast<uint64_t>(order.resume_pass);
  const int64_t per_pass = pass_batches(order, n, order.resume_step >= 0 ? resumed + 1 : 0);
  if (order.resume_step < 0 || order.steps_per_epoch <= 0) {
    return locate_in_stream(order, epoch, batch, order.steps_per_epoch, per_pass);
  }
  const int64_t t = epoch * order.steps_per_epoch + batch - order.resume_step;
  return locate_after_resume(order, t, pass_batches(order, n, resumed), per_pass);
}

}  // namespace fastfeed
