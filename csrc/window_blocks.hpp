// Blocks of sliding-window batches: the windowed Feeder's BlockBuilder.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "assembler.hpp"
#include "block.hpp"
#include "buffer_pool.hpp"
#include "order.hpp"

namespace fastfeed {

class WindowBlocks : public BlockBuilder {
 public:
  // `x_feat`/`y_feat`: feature shapes, so blocks carry their final shapes. `pinned`: output
  // buffers page-locked for uploads to a GPU. `starts_only`: blocks carry no data, only each
  // sample's flat_start() as int64 X (for a source kept whole on the GPU: only these cross).
  WindowBlocks(std::shared_ptr<const Assembler> assembler, ShareSpec share, RunSpec run,
               std::vector<int64_t> x_feat, std::vector<int64_t> y_feat, size_t max_idle, bool pinned = false,
               bool starts_only = false);

  int64_t num_blocks() const override { return num_blocks_; }
  Block build(int64_t k) const override;

  // Batches in one epoch of this configuration (without virtual epochs).
  static int64_t batches_per_pass(int64_t per_rank, int64_t batch_size, bool drop_last);

 private:
  std::shared_ptr<const Assembler> assembler_;
  ShareSpec share_;
  RunSpec run_;
  std::vector<int64_t> x_shape_tail_, y_shape_tail_;
  int64_t num_blocks_ = 0;
  std::shared_ptr<BufferPool> x_pool_, y_pool_;
  bool starts_only_ = false;
};

}  // namespace fastfeed
