// Which sample a rank reads at each position of a pass over the data.
#pragma once
#include <cstdint>

#include "permutation.hpp"

namespace fastfeed {

// One pass is a permutation of all `n` samples (keyed by the pass number when shuffled).
// With `world` ranks, rank r reads the pass's positions r, r + world, r + 2 * world, ...
// Every rank reads the same count: `pad` wraps around to the pass's first samples (a few are
// read twice), otherwise the tail that does not divide evenly is left out.
struct ShareSpec {
  int64_t n = 0;
  bool shuffle = false;
  uint64_t seed = 0;
  int64_t rank = 0;
  int64_t world = 1;
  bool pad = true;

  int64_t per_rank() const { return pad ? (n + world - 1) / world : n / world; }
};

class PassOrder {
 public:
  PassOrder(const ShareSpec& share, uint64_t pass)
      : share_(share), perm_(static_cast<uint64_t>(share.n), share.seed, pass) {}

  int64_t size() const { return share_.per_rank(); }
  // The sample at position `q` (0 <= q < size()) of this rank's share of the pass.
  int64_t sample_at(int64_t q) const {
    int64_t global = q * share_.world + share_.rank;
    if (global >= share_.n) global %= share_.n;  // padding repeats the pass's first samples
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
