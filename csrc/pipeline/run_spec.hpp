// One run of a pipeline: which batches of which epoch, and how they are built and handed over.
#pragma once
#include <algorithm>
#include <cstdint>

#include "common/errors.hpp"
#include "pipeline/tuner.hpp"

namespace fastfeed {

struct RunSpec {
  int64_t epoch = 0;
  int64_t first_batch = 0;        // the run covers batches [first_batch, end of the epoch)
  int64_t batches_per_block = 1;  // small batches travel in blocks to amortise hand-overs
  int num_threads = 1;            // workers claiming blocks: fixed, or where tuning starts
  int prefetch = 1;               // blocks built ahead of the consumer: fixed, or where tuning starts
  // Tuned while feeding (tuner.hpp): the workers claiming blocks, up to max_threads (only
  // busy_threads while the consumer computes), and the blocks built ahead, up to max_prefetch.
  bool auto_threads = false;
  bool auto_prefetch = false;
  int max_threads = 1;
  int busy_threads = 1;
  int max_prefetch = 1;
  int tune_window = 16;           // hand-overs between two decisions of the tuner
  bool pinned = false;            // output buffers page-locked for uploads to a GPU
  // Blocks carry indices instead of data (fields.hpp: starts, pieces) for a source kept whole
  // on a GPU: only those cross the bus, and the GPU gathers the steps.
  bool indices_only = false;

  void validate() const {
    require_arg(epoch >= 0, "RunSpec.epoch", ">= 0", epoch);
    require_arg(first_batch >= 0, "RunSpec.first_batch", ">= 0", first_batch);
    require_arg(batches_per_block >= 1, "RunSpec.batches_per_block", ">= 1", batches_per_block);
    require_arg(num_threads >= 1, "RunSpec.num_threads", ">= 1", num_threads);
    require_arg(prefetch >= 1, "RunSpec.prefetch", ">= 1", prefetch);
    require_arg(max_threads >= 1, "RunSpec.max_threads", ">= 1", max_threads);
    require_arg(busy_threads >= 1, "RunSpec.busy_threads", ">= 1", busy_threads);
    require_arg(max_prefetch >= 1, "RunSpec.max_prefetch", ">= 1", max_prefetch);
    require_arg(tune_window >= 1, "RunSpec.tune_window", ">= 1", tune_window);
  }

  TuneLimits tune_limits() const {
    TuneLimits t;
    t.auto_threads = auto_threads;
    t.auto_prefetch = auto_prefetch;
    t.max_threads = max_threads;
    t.busy_threads = busy_threads;
    t.max_prefetch = max_prefetch;
    t.window = tune_window;
    return t;
  }
  Shape start() const { return Shape{num_threads, prefetch}; }
  // The most blocks ever built ahead: output pools keep that many buffers (and a few) for reuse.
  int ring_slots() const { return auto_prefetch ? std::max(prefetch, max_prefetch) : prefetch; }
};

}  // namespace fastfeed
