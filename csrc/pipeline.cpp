#include "pipeline.hpp"

#include <algorithm>

#include "errors.hpp"

namespace fastfeed {

Pipeline::Pipeline(std::shared_ptr<const Assembler> assembler, EpochOrder order,
                   PipelineConfig config)
    : assembler_(std::move(assembler)), order_(order), config_(config) {
  if (config_.batch_size < 1 || config_.batches_per_block < 1 || config_.num_threads < 1 ||
      config_.prefetch < 1 || config_.first_batch < 0 || config_.end_batch < config_.first_batch) {
    throw ArgumentError("invalid pipeline configuration");
  }
  const int64_t batches = config_.end_batch - config_.first_batch;
  num_blocks_ = (batches + config_.batches_per_block - 1) / config_.batches_per_block;
  const size_t samples = static_cast<size_t>(samples_per_block());
  // Idle buffers kept: enough for the ring plus a few the consumer is still holding.
  const size_t keep = static_cast<size_t>(config_.prefetch) + 2;
  x_pool_ = BufferPool::create(samples * assembler_->x_sample_bytes(), keep);
  if (assembler_->has_targets()) {
    y_pool_ = BufferPool::create(samples * assembler_->y_sample_bytes(), keep);
  }
  slots_.resize(static_cast<size_t>(config_.prefetch));
  // A single block is built by the consumer itself in next(): starting threads would cost
  // more than the work (a whole small epoch often fits one block).
  const int64_t threads = num_blocks_ <= 1 ? 0 : std::min<int64_t>(config_.num_threads, num_blocks_);
  workers_.reserve(static_cast<size_t>(threads));
  for (int64_t i = 0; i < threads; ++i) workers_.emplace_back([this] { run_worker(); });
}

Pipeline::~Pipeline() { close(); }

void Pipeline::close() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
  }
  space_cv_.notify_all();
  ready_cv_.notify_all();
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
  std::lock_guard<std::mutex> lk(mu_);
  workers_.clear();
  for (auto& s : slots_) s = Slot{};
}

Block Pipeline::build_block(int64_t k) const {
  Block b;
  b.first_batch = config_.first_batch + k * config_.batches_per_block;
  const int64_t end_batch = std::min(b.first_batch + config_.batches_per_block, config_.end_batch);
  b.num_batches = end_batch - b.first_batch;
  b.first_position = b.first_batch * config_.batch_size;
  const int64_t end_position = std::min(end_batch * config_.batch_size, order_.size());
  b.num_samples = end_position - b.first_position;
  b.x = x_pool_->acquire();
  if (y_pool_) b.y = y_pool_->acquire();

  const size_t xs = assembler_->x_sample_bytes();
  const size_t ys = assembler_->y_sample_bytes();
  for (int64_t i = 0; i < b.num_samples; ++i) {
    const int64_t sample = order_.sample_at(b.first_position + i);
    try {
      assembler_->fill_sample(sample, b.x.get() + i * xs, b.y ? b.y.get() + i * ys : nullptr);
    } catch (const std::exception& e) {
      b.failed_at = i;
      b.error = assembler_->describe(sample) + ": " + e.what();
      break;
    }
  }
  return b;
}

void Pipeline::run_worker() {
  for (;;) {
    int64_t k;
    {
      std::unique_lock<std::mutex> lk(mu_);
      space_cv_.wait(lk, [this] {
        return stopping_ || next_to_claim_ >= num_blocks_ ||
               next_to_claim_ < next_to_deliver_ + config_.prefetch;
      });
      if (stopping_ || next_to_claim_ >= num_blocks_) return;
      k = next_to_claim_++;
    }
    Block b = build_block(k);
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (stopping_) return;
      Slot& slot = slots_[static_cast<size_t>(k % config_.prefetch)];
      slot.data = std::move(b);
      slot.block = k;
    }
    ready_cv_.notify_all();
  }
}

Pipeline::Status Pipeline::next(Block* out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(mu_);
  if (stopping_ || next_to_deliver_ >= num_blocks_) return Status::Finished;
  if (workers_.empty()) {
    *out = build_block(next_to_deliver_++);
    return Status::Ready;
  }
  Slot& slot = slots_[static_cast<size_t>(next_to_deliver_ % config_.prefetch)];
  const int64_t want = next_to_deliver_;
  if (!ready_cv_.wait_for(lk, timeout, [&] { return stopping_ || slot.block == want; })) {
    return Status::Timeout;
  }
  if (stopping_) return Status::Finished;
  *out = std::move(slot.data);
  slot = Slot{};
  ++next_to_deliver_;
  lk.unlock();
  space_cv_.notify_all();
  return Status::Ready;
}

}  // namespace fastfeed
