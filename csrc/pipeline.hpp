// The prefetching pipeline: worker threads assemble blocks of whole batches into pooled
// buffers, at most `prefetch` blocks ahead of the consumer, and hand them over in order.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "assembler.hpp"
#include "buffer_pool.hpp"
#include "order.hpp"

namespace fastfeed {

struct PipelineConfig {
  int64_t batch_size = 1;
  int64_t first_batch = 0;        // the run covers batches [first_batch, end_batch)
  int64_t end_batch = 0;
  int64_t batches_per_block = 1;  // small batches travel in blocks to amortise hand-overs
  int num_threads = 1;
  int prefetch = 2;               // blocks assembled ahead of the consumer
};

// Several consecutive batches, assembled into one buffer per output.
struct Block {
  int64_t first_batch = 0;
  int64_t num_batches = 0;
  int64_t first_position = 0;  // position in the epoch's order of the block's first sample
  int64_t num_samples = 0;
  std::shared_ptr<std::byte> x;
  std::shared_ptr<std::byte> y;  // null without targets
  // Set when a sample failed: samples before `failed_at` (relative to the block) are valid.
  int64_t failed_at = -1;
  std::string error;
};

class Pipeline {
 public:
  enum class Status { Ready, Timeout, Finished };

  Pipeline(std::shared_ptr<const Assembler> assembler, EpochOrder order, PipelineConfig config);
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // The next block in order, waiting at most `timeout` (so a caller can look for signals).
  Status next(Block* out, std::chrono::milliseconds timeout);
  // Stops the workers and joins them; blocks not yet delivered are dropped. Idempotent.
  void close();

  int64_t num_blocks() const { return num_blocks_; }
  int64_t samples_per_block() const { return config_.batches_per_block * config_.batch_size; }

 private:
  void run_worker();
  Block build_block(int64_t k) const;

  std::shared_ptr<const Assembler> assembler_;
  EpochOrder order_;
  PipelineConfig config_;
  int64_t num_blocks_ = 0;
  std::shared_ptr<BufferPool> x_pool_;
  std::shared_ptr<BufferPool> y_pool_;

  struct Slot {
    int64_t block = -1;  // which block the slot holds, -1 when empty
    Block data;
  };

  std::mutex mu_;
  std::condition_variable ready_cv_;  // a slot was filled (the consumer waits)
  std::condition_variable space_cv_;  // the consumer moved on, or we stop (workers wait)
  std::vector<Slot> slots_;
  int64_t next_to_claim_ = 0;
  int64_t next_to_deliver_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace fastfeed
