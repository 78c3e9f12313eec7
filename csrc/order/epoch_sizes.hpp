// How many items and batches a rank gets from a pass and an epoch: computed here once, for
// windows and whole sequences alike, and reported to Python (len(feeder)) from the same numbers.
#pragma once
#include <cstdint>

#include "order/order.hpp"

namespace fastfeed {

struct EpochSizes {
  int64_t per_rank = 0;           // items of one pass this rank reads (rank_share_size)
  int64_t batches_per_pass = 0;   // those cut into batches: a short last one is dropped with drop_last
  int64_t batches_per_epoch = 0;  // steps_per_epoch when set (virtual epochs), else batches_per_pass
};

// `units` is what the ranks share out of one pass: samples (windows), sequences kept, or the
// rows a pass packs into (ceil(total kept steps / max_len)) when packing.
// With an elastic resume point (OrderSpec::resume_step) in `epoch`, a real epoch (no virtual
// epochs) is what its pass has left; `epoch` -1 asks for a full epoch.
inline EpochSizes epoch_sizes(int64_t units, const OrderSpec& order, int64_t epoch = -1) {
  order.validate();
  require_arg(units >= 0, "units", ">= 0", units);
  EpochSizes s;
  const int64_t B = order.batch_size;
  const bool resumed = order.steps_per_epoch <= 0 && epoch >= 0 && order.resume_step == epoch;
  s.per_rank = resumed ? pass_share_size(order, units, static_cast<uint64_t>(order.resume_pass))
                       : rank_share_size(units, order.rank, order.world_size, B, order.drop_last);
  s.batches_per_pass = batch_count(s.per_rank, B, order.drop_last);
  s.batches_per_epoch = order.steps_per_epoch > 0 ? order.steps_per_epoch : s.batches_per_pass;
  return s;
}

}  // namespace fastfeed
