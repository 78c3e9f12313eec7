// One run of a pipeline: which batches of which epoch, and how they are built and handed over.
#pragma once
#include <cstdint>

#include "common/errors.hpp"

namespace fastfeed {

struct RunSpec {
  int64_t epoch = 0;
  int64_t first_batch = 0;        // the run covers batches [first_batch, end of the epoch)
  int64_t batches_per_block = 1;  // small batches travel in blocks to amortise hand-overs
  int num_threads = 1;
  int prefetch = 1;               // blocks built ahead of the consumer
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
  }
};

}  // namespace fastfeed
