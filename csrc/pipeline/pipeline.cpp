#include "pipeline/pipeline.hpp"

#include <algorithm>

#include "common/errors.hpp"

namespace fastfeed {

namespace {
// A worker waiting for a free slot looks again after kFirstRecheck, then after twice as long
// each time, up to kLastRecheck: next() wakes it only when the ring ran dry (see there). A
// fixed 200 us poll kept idle workers behind a full ring busy: ~9% of a core per two threads
// while a training step ran, or while the loop paused for validation.
constexpr std::chrono::microseconds kFirstRecheck{200};
constexpr std::chrono::microseconds kLastRecheck{50'000};

// Block k, timed; a builder that throws (out of memory, say) gives a failed block instead, so
// the error reaches the consumer at that block rather than ending the process on a worker.
Block build_timed(const BlockBuilder& builder, int64_t k) {
  const auto start = std::chrono::steady_clock::now();
  Block b;
  try {
    b = builder.build(k);
  } catch (const std::exception& e) {
    b = Block{};
    b.failed_at = 0;
    b.error = std::string("building a block of batches failed: ") + e.what();
  }
  b.build_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return b;
}
}  // namespace

Pipeline::Pipeline(std::shared_ptr<const BlockBuilder> builder, int num_threads, int prefetch)
    : builder_(std::move(builder)), prefetch_(prefetch) {
  if (!builder_ || num_threads < 1 || prefetch < 1) throw ArgumentError("invalid pipeline configuration");
  num_blocks_ = builder_->num_blocks();
  slots_.resize(static_cast<size_t>(prefetch_));
  // A single block is built by the consumer itself in next(): starting threads would cost
  // more than the work (a whole small epoch often fits one block).
  const int64_t threads = num_blocks_ <= 1 ? 0 : std::min<int64_t>(num_threads, num_blocks_);
  workers_.reserve(static_cast<size_t>(threads));
  try {
    for (int64_t i = 0; i < threads; ++i) workers_.emplace_back([this] { run_worker(); });
  } catch (...) {
    close();  // the threads already started must be joined before the exception leaves
    throw;
  }
}

Pipeline::~Pipeline() { close(); }

void Pipeline::close() {
  // One closer joins the workers; a concurrent one (Feeder.close() beside the iterator's own
  // clean-up, both without the GIL) waits for it. Joining a thread twice hangs or aborts.
  std::lock_guard<std::mutex> closing(close_mu_);
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

void Pipeline::run_worker() {
  for (;;) {
    int64_t k;
    {
      std::unique_lock<std::mutex> lk(mu_);
      const auto can_go = [this] {
        return stopping_ || next_to_claim_ >= num_blocks_ || next_to_claim_ < next_to_deliver_ + prefetch_;
      };
      for (auto pause = kFirstRecheck; !can_go(); pause = std::min(2 * pause, kLastRecheck)) {
        space_cv_.wait_for(lk, pause);
      }
      if (stopping_ || next_to_claim_ >= num_blocks_) return;
      k = next_to_claim_++;
    }
    Block b = build_timed(*builder_, k);
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (stopping_) return;
      Slot& slot = slots_[static_cast<size_t>(k % prefetch_)];
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
    *out = build_timed(*builder_, next_to_deliver_++);
    return Status::Ready;
  }
  Slot& slot = slots_[static_cast<size_t>(next_to_deliver_ % prefetch_)];
  const int64_t want = next_to_deliver_;
  if (!ready_cv_.wait_for(lk, timeout, [&] { return stopping_ || slot.block == want; })) {
    return Status::Timeout;
  }
  if (stopping_) return Status::Finished;
  *out = std::move(slot.data);
  slot = Slot{};
  ++next_to_deliver_;
  for (int64_t k = next_to_deliver_; k < next_to_deliver_ + prefetch_ - 1; ++k) {
    if (slots_[static_cast<size_t>(k % prefetch_)].block == k) ++out->queued;
  }
  lk.unlock();
  // Waking a sleeping worker is a system call that can cost the consumer ~100 us on a VM, every
  // batch. While other blocks are ready the workers have time: they find the free slot when
  // they look again. Only when the ring ran dry does the consumer pay for the wake-up.
  if (out->queued == 0) space_cv_.notify_all();
  return Status::Ready;
}

}  // namespace fastfeed
