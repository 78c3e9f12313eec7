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
    : Pipeline(std::move(builder), TuneLimits{}, Shape{num_threads, prefetch}) {}

Pipeline::Pipeline(std::shared_ptr<const BlockBuilder> builder, const TuneLimits& limits, Shape start)
    : owner_(::getpid()) {
  if (!builder || start.threads < 1 || start.prefetch < 1 || limits.max_threads < 1 || limits.max_prefetch < 1) {
    throw ArgumentError("invalid pipeline configuration");
  }
  num_blocks_ = builder->num_blocks();
  // A single block is built by the consumer itself in next(): starting threads would cost
  // more than the work (a whole small epoch often fits one block). Nor are more workers
  // started than there are blocks, and the tuner never counts on workers that were not.
  TuneLimits fitted = limits;
  if (fitted.auto_threads) {
    fitted.max_threads = static_cast<int>(std::clamp<int64_t>(num_blocks_, 1, fitted.max_threads));
  }
  state_ = std::make_unique<State>(fitted, start);
  State& s = *state_;
  s.builder = std::move(builder);
  s.num_blocks = num_blocks_;
  s.slots.resize(static_cast<size_t>(fitted.auto_prefetch ? s.tuner.limits().max_prefetch : start.prefetch));
  s.last_handover = std::chrono::steady_clock::now();
  const int most = fitted.auto_threads ? s.tuner.limits().max_threads : start.threads;
  start_workers(num_blocks_ <= 1 ? 0 : static_cast<int>(std::min<int64_t>(most, num_blocks_)));
}

void Pipeline::start_workers(int threads) {
  State& s = *state_;
  s.workers.reserve(static_cast<size_t>(threads));
  try {
    for (int i = 0; i < threads; ++i) s.workers.emplace_back([&s, i] { s.run_worker(i); });
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
  s.park_cv.notify_all();
  s.ready_cv.notify_all();
  for (auto& t : s.workers) {
    if (t.joinable()) t.join();
  }
  std::lock_guard<std::mutex> lk(s.mu);
  s.workers.clear();
  for (auto& slot : s.slots) slot = State::Slot{};
}

void Pipeline::State::run_worker(int index) {
  for (;;) {
    int64_t k;
    bool last = false;
    {
      std::unique_lock<std::mutex> lk(mu);
      if (!wait_to_claim(lk, index)) return;
      k = next_to_claim++;
      last = next_to_claim == num_blocks;
    }
    if (last) park_cv.notify_all();  // nothing left to claim: parked workers may end
    Block b = build_timed(*builder, k);
    {
      std::lock_guard<std::mutex> lk(mu);
      if (stopping) return;
      Slot& slot = slots[static_cast<size_t>(k % static_cast<int64_t>(slots.size()))];
      slot.data = std::move(b);
      slot.block = k;
    }
    ready_cv.notify_all();
  }
}

bool Pipeline::State::wait_to_claim(std::unique_lock<std::mutex>& lk, int index) {
  auto pause = kFirstRecheck;
  for (;;) {
    if (stopping || next_to_claim >= num_blocks) return false;
    if (index >= shape.threads) {
      // Parked: the tuner has fewer workers claim blocks. Woken when it wants more, or to end.
      park_cv.wait(lk);
      pause = kFirstRecheck;
    } else if (next_to_claim < next_to_deliver + shape.prefetch) {
      return true;
    } else {
      space_cv.wait_for(lk, pause);
      pause = std::min(2 * pause, kLastRecheck);
    }
  }
}

int64_t Pipeline::State::ready_behind(int64_t k) const {
  const auto size = static_cast<int64_t>(slots.size());
  int64_t ready = 0;
  for (int64_t j = k + 1; j < k + shape.prefetch; ++j) {
    if (slots[static_cast<size_t>(j % size)].block == j) ++ready;
  }
  return ready;
}

bool Pipeline::State::tune(double waited_s, int64_t queued) {
  if (!tuner.tuning()) return false;  // a fixed shape: not even the clock is read
  const auto now = std::chrono::steady_clock::now();
  Handover h;
  h.waited_s = earlier_wait_s + waited_s;
  h.interval_s = std::chrono::duration<double>(now - last_handover).count();
  h.ring_full = queued + 1 >= shape.prefetch;
  earlier_wait_s = 0;
  last_handover = now;
  if (!tuner.observe(h)) return false;
  shape = tuner.shape();
  return true;
}

void Pipeline::State::set_shape(Shape to) {
  // Never deeper than the ring's slots, nor more workers than were started (when any were).
  to.prefetch = std::min(to.prefetch, static_cast<int>(slots.size()));
  if (!workers.empty()) to.threads = std::min(to.threads, static_cast<int>(workers.size()));
  tuner.force(to);
  shape = tuner.shape();
}

Shape Pipeline::shape() const {
  if (!state_ || foreign()) return Shape{0, 0};  // (a forked child must not take the parent's lock)
  std::lock_guard<std::mutex> lk(state_->mu);
  return state_->shape;
}

void Pipeline::retune(Shape s) {
  if (!state_ || foreign()) return;
  {
    std::lock_guard<std::mutex> lk(state_->mu);
    state_->set_shape(s);
  }
  state_->park_cv.notify_all();
  state_->space_cv.notify_all();
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
  const int64_t want = s.next_to_deliver;
  State::Slot& slot = s.slots[static_cast<size_t>(want % static_cast<int64_t>(s.slots.size()))];
  double waited_s = 0;
  if (slot.block != want) {  // the clock is read only when the consumer has to wait
    const auto asked = std::chrono::steady_clock::now();
    const bool ready = s.ready_cv.wait_for(lk, timeout, [&] { return s.stopping || slot.block == want; });
    waited_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - asked).count();
    if (!ready) {
      s.earlier_wait_s += waited_s;
      return Status::Timeout;
    }
    if (s.stopping) return Status::Finished;
  }
  *out = std::move(slot.data);
  slot = State::Slot{};
  ++s.next_to_deliver;
  out->queued = s.ready_behind(want);
  const bool retuned = s.tune(waited_s, out->queued);
  out->threads = s.shape.threads;
  out->prefetch = s.shape.prefetch;
  lk.unlock();
  if (retuned) {
    // More workers may claim (parked ones wake), or deeper: both kinds of waiting worker look.
    s.park_cv.notify_all();
    s.space_cv.notify_all();
  } else if (out->queued == 0) {
    // Waking a sleeping worker is a system call that can cost the consumer ~100 us on a VM, every
    // batch. While other blocks are ready the workers have time: they find the free slot when
    // they look again. Only when the ring ran dry does the consumer pay for the wake-up.
    s.space_cv.notify_all();
  }
  return Status::Ready;
}

}  // namespace fastfeed
