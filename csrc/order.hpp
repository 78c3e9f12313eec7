// Which sample a rank reads at each position of a pass over the data.
#pragma once
#include <cstdint>

#include "permutation.hpp"

namespace fastfeed {

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

// One pass is a permutation of all `n` samples (keyed by the pass number when shuffled).
// With `world` ranks, rank r reads the pass's positions r, r + world, r + 2 * world, ...,
// rank_share_size() of them.
struct ShareSpec {
  int64_t n = 0;
  bool shuffle = false;
  uint64_t seed = 0;
  int64_t rank = 0;
  int64_t world = 1;
  bool drop_last = false;
  int64_t batch_size = 1;

  int64_t per_rank() const { return rank_share_size(n, rank, world, batch_size, drop_last); }
};

class PassOrder {
 public:
  PassOrder(const ShareSpec& share, uint64_t pass)
      : share_(share), perm_(static_cast<uint64_t>(share.n), share.seed, pass) {}

  int64_t size() const { return share_.per_rank(); }
  // The sample at position `q` (0 <= q < size()) of this rank's share of the pass.
  int64_t sample_at(int64_t q) const {
    const int64_t global = q * share_.world + share_.rank;
    return share_.shuffle ? static_cast<int64_t>(perm_(static_cast<uint64_t>(global))) : global;
  }

 private:
  ShareSpec share_;
  Permutation perm_;
};

}  // namespace fastfeed

namespace fastfeed {

// Which batches of which epoch one iteration covers, and how epochs map onto passes.
struct RunSpec {
  int64_t batch_size = 1;
  int64_t epoch = 0;
  int64_t first_batch = 0;        // the run covers batches [first_batch, end_batch) of the epoch
  int64_t end_batch = 0;
  int64_t steps_per_epoch = 0;    // > 0: virtual epochs; the stream of passes runs on across them
  int64_t batches_per_block = 1;  // small batches travel in blocks to amortise hand-overs
};

struct StreamPosition {
  uint64_t pass;
  int64_t index;  // within the pass
};

// Where item `index` of the run's epoch lies, for passes of `per_pass` items and epochs of
// `per_epoch` items (an item is a sample or a batch). Without virtual epochs, epoch = pass.
inline StreamPosition locate_in_stream(const RunSpec& run, int64_t index, int64_t per_epoch, int64_t per_pass) {
  if (run.steps_per_epoch <= 0) return {static_cast<uint64_t>(run.epoch), index};
  const int64_t s = run.epoch * per_epoch + index;
  return {static_cast<uint64_t>(s / per_pass), s % per_pass};
}

}  // namespace fastfeed
