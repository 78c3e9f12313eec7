#include "pipeline/pipeline.hpp"

#include <algorithm>
#include <atomic>
#include <new>
#include <stdexcept>
#include <string>

#include <unistd.h>

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
  } catch (const std::bad_alloc&) {
    b = Block{};
    b.failed_at = 0;
    b.error = "out of memory for the block's buffers (std::bad_alloc): use smaller batches or a lower prefetch";
  } catch (const std::exception& e) {
    b = Block{};
    b.failed_at = 0;
    b.error = std::string("building a block of batches failed: ") + e.what();
  }
  b.build_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return b;
}
}  // namespace

std::atomic<Pipeline::State*> Pipeline::abandoned_{nullptr};

Pipeline::Pipeline(std::shared_ptr<const BlockBuilder> builder, int num_threads, int prefetch)
    : state_(std::make_unique<State>()), owner_(::getpid()) {
  State& s = *state_;
  s.builder = std::move(builder);
  s.prefetch = prefetch;
  if (!s.builder || num_threads < 1 || prefetch < 1) throw ArgumentError("invalid pipeline configuration");
  s.num_blocks = num_blocks_ = s.builder->num_blocks();
  s.slots.resize(static_cast<size_t>(prefetch));
  // A single block is built by the consumer itself in next(): starting threads would cost
  // more than the work (a whole small epoch often fits one block).
  const int64_t threads = num_blocks_ <= 1 ? 0 : std::min<int64_t>(num_threads, num_blocks_);
  s.workers.reserve(static_cast<size_t>(threads));
  try {
    for (int64_t i = 0; i < threads; ++i) s.workers.emplace_back([&s] { s.run_worker(); });
  } catch (...) {
    close();  // the threads already started must be joined before the exception leaves
    throw;
  }
}

Pipeline::~Pipeline() { close(); }

bool Pipeline::foreign() const { return ::getpid() != owner_; }

void Pipeline::abandon() {
  // Kept reachable from a global list, so that leak checkers see it as held on purpose. The
  // push is one atomic exchange: no lock a thread of the parent could have held at the fork.
  State* s = state_.release();
  if (s == nullptr) return;
  s->next_abandoned = abandoned_.load(std::memory_order_relaxed);
  while (!abandoned_.compare_exchange_weak(s->next_abandoned, s, std::memory_order_release,
                                            std::memory_order_relaxed)) {
  }
}

void Pipeline::close() {
  if (!state_) return;  // abandoned in a forked child
  if (foreign()) {
    abandon();
    return;
  }
  State& s = *state_;
  // One closer joins the workers; a concurrent one (Feeder.close() beside the iterator's own
  // clean-up, both without the GIL) waits for it. Joining a thread twice hangs or aborts.
  std::lock_guard<std::mutex> closing(s.close_mu);
  {
    std::lock_guard<std::mutex> lk(s.mu);
    if (s.stopping && s.workers.empty()) return;
    s.stopping = true;
  }
  s.space_cv.notify_all();
  s.ready_cv.notify_all();
  for (auto& t : s.workers) {
    if (t.joinable()) t.join();
  }
  std::lock_guard<std::mutex> lk(s.mu);
  s.workers.clear();
  for (auto& slot : s.slots) slot = State::Slot{};
}

void Pipeline::State::run_worker() {
  for (;;) {
    int64_t k;
    {
      std::unique_lock<std::mutex> lk(mu);
      const auto can_go = [this] {
        return stopping || next_to_claim >= num_blocks || next_to_claim < next_to_deliver + prefetch;
      };
      for (auto pause = kFirstRecheck; !can_go(); pause = std::min(2 * pause, kLastRecheck)) {
        space_cv.wait_for(lk, pause);
      }
      if (stopping || next_to_claim >= num_blocks) return;
      k = next_to_claim++;
    }
    Block b = build_timed(*builder, k);
    {
      std::lock_guard<std::mutex> lk(mu);
      if (stopping) return;
      Slot& slot = slots[static_cast<size_t>(k % prefetch)];
      slot.data = std::move(b);
      slot.block = k;
    }
    ready_cv.notify_all();
  }
}

Pipeline::Status Pipeline::next(Block* out, std::chrono::milliseconds timeout) {
  if (foreign()) {
    throw std::runtime_error("this epoch's worker threads run in process " + std::to_string(owner_) +
                             ", not in this one (" + std::to_string(::getpid()) +
                             ", forked from it): an iteration started before a fork cannot go on in the "
                             "child; make a new Feeder in the child");
  }
  if (!state_) return Status::Finished;
  State& s = *state_;
  std::unique_lock<std::mutex> lk(s.mu);
  if (s.stopping || s.next_to_deliver >= s.num_blocks) return Status::Finished;
  if (s.workers.empty()) {
    *out = build_timed(*s.builder, s.next_to_deliver++);
    return Status::Ready;
  }
  State::Slot& slot = s.slots[static_cast<size_t>(s.next_to_deliver % s.prefetch)];
  const int64_t want = s.next_to_deliver;
  if (!s.ready_cv.wait_for(lk, timeout, [&] { return s.stopping || slot.block == want; })) {
    return Status::Timeout;
  }
  if (s.stopping) return Status::Finished;
  *out = std::move(slot.data);
  slot = State::Slot{};
  ++s.next_to_deliver;
  for (int64_t k = s.next_to_deliver; k < s.next_to_deliver + s.prefetch - 1; ++k) {
    if (s.slots[static_cast<size_t>(k % s.prefetch)].block == k) ++out->queued;
  }
  lk.unlock();
  // Waking a sleeping worker is a system call that can cost the consumer ~100 us on a VM, every
  // batch. While other blocks are ready the workers have time: they find the free slot when
  // they look again. Only when the ring ran dry does the consumer pay for the wake-up.
  if (out->queued == 0) s.space_cv.notify_all();
  return Status::Ready;
}

}  // namespace fastfeed
