// The prefetching pipeline: worker threads build blocks of whole batches into pooled
// buffers, at most `prefetch` blocks ahead of the consumer, and hand them over in order.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "pipeline/block.hpp"

namespace fastfeed {

class Pipeline {
 public:
  enum class Status { Ready, Timeout, Finished };

  Pipeline(std::shared_ptr<const BlockBuilder> builder, int num_threads, int prefetch);
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // The next block in order, waiting at most `timeout` (so a caller can look for signals).
  Status next(Block* out, std::chrono::milliseconds timeout);
  // Stops the workers and joins them; blocks not yet delivered are dropped. Idempotent.
  void close();

  int64_t num_blocks() const { return num_blocks_; }

 private:
  void run_worker();

  std::shared_ptr<const BlockBuilder> builder_;
  int64_t num_blocks_ = 0;
  int prefetch_ = 1;

  struct Slot {
    int64_t block = -1;  // which block the slot holds, -1 when empty
    Block data;
  };

  std::mutex close_mu_;  // serialises close(): held while joining, so workers_ only shrinks under it
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
