// Blocks of sliding-window batches: the windowed Feeder's BlockBuilder.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "order/epoch_sizes.hpp"
#include "order/mix_order.hpp"
#include "order/order.hpp"
#include "pipeline/block.hpp"
#include "pipeline/buffer_pool.hpp"
#include "pipeline/run_spec.hpp"
#include "windows/assembler.hpp"

namespace fastfeed {

class WindowBlocks : public BlockBuilder {
 public:
  // Rank order.rank's batches [run.first_batch, end of epoch run.epoch) of the assembler's
  // samples. Blocks carry the assembler's layouts() (x, y with targets, and the optional
  // fields); with run.indices_only they carry only each sample's flat_start() as "starts" (for
  // a source kept whole on the GPU: only these cross the bus).
  // With `mix`, the assembler holds every component's series back to back and the stream of
  // samples follows the mixture (order.steps_per_epoch is then required).
  WindowBlocks(std::shared_ptr<const Assembler> assembler, const OrderSpec& order, const RunSpec& run,
               std::shared_ptr<const MixOrder> mix = nullptr);

  int64_t num_blocks() const override { return num_blocks_; }
  Block build(int64_t k) const override;

  const EpochSizes& sizes() const { return sizes_; }

 private:
  // The samples (and their components) of a block's positions: from the order or the mixture.
  void samples_of(int64_t first, int64_t n, int64_t* sample, int64_t* component) const;

  std::shared_ptr<const Assembler> assembler_;
  std::shared_ptr<const MixOrder> mix_;
  int series_slot_ = -1;  // the assembler's "series" layout, made relative to its component in a mixture
  OrderSpec order_;
  RunSpec run_;
  int64_t units_ = 0;  // samples in a pass
  int64_t first_pass_ = 0;  // after an elastic resume: this rank's samples of the resumed pass
  int64_t per_pass_ = 0;    // this rank's samples of each pass (stream_share_size with virtual epochs)
  EpochSizes sizes_;
  int64_t num_blocks_ = 0;
  // One per layout of the assembler, or one for the starts with indices_only.
  std::vector<std::shared_ptr<BufferPool>> pools_;
};

}  // namespace fastfeed
