// Which sample a rank reads at each position of a pass over the data.
#pragma once
#include <cstdint>
#include <string>

#include "common/errors.hpp"
#include "order/permutation.hpp"

namespace fastfeed {

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

  void validate() const {
    require_arg(batch_size >= 1, "OrderSpec.batch_size", ">= 1", batch_size);
    require_arg(world_size >= 1, "OrderSpec.world_size", ">= 1", world_size);
    if (rank < 0 || rank >= world_size) {
      throw ArgumentError("OrderSpec.rank must be in [0, world_size=" + std::to_string(world_size) + "), got " +
                          std::to_string(rank));
    }
    require_arg(steps_per_epoch >= 0, "OrderSpec.steps_per_epoch", ">= 0 (0: an epoch is a pass)", steps_per_epoch);
  }
};

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

// Rank order.rank's share of pass `pass` over `n` items: rank_share_size() of them.
class PassOrder {
 public:
  PassOrder(const OrderSpec& order, int64_t n, uint64_t pass)
      : shuffle_(order.shuffle),
        rank_(order.rank),
        world_(order.world_size),
        size_(rank_share_size(n, order.rank, order.world_size, order.batch_size, order.drop_last)),
        perm_(static_cast<uint64_t>(n), order.seed, pass) {}

  int64_t size() const { return size_; }
  // The item at position `q` (0 <= q < size()) of this rank's share of the pass.
  int64_t sample_at(int64_t q) const {
    const int64_t global = q * world_ + rank_;
    return shuffle_ ? static_cast<int64_t>(perm_(static_cast<uint64_t>(global))) : global;
  }

 private:
  bool shuffle_;
  int64_t rank_, world_, size_;
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

}  // namespace fastfeed
