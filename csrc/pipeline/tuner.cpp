#include "pipeline/tuner.hpp"

#include <algorithm>
#include <limits>

namespace fastfeed {

namespace {
// A window in which the consumer waited more than this share of its time was starved. Lower
// than the 5% a training loop may wait, so the tuner acts before the loop feels it.
constexpr double kStarvedShare = 0.02;
// A consumer that waited more than this share of its time may lend its core: one worker more
// than busy_threads. Its thread then competes with the workers, but the loop gains. On 2 cores,
// with B the time a worker takes per block and C the loop's compute per block (B > C, or it
// would not wait), one worker gives a step of B, two (sharing the cores with the loop) about
// (B + C) / 2: shorter by half the waiting share (B - C) / B. Below a tenth, the switches and
// the caches a shared core costs eat what it gains. It lends only after kLendWindows such
// windows in a row: a burst (a loop skipping a few batches without computing) is not a need.
constexpr double kLendShare = 0.10;
constexpr int kLendWindows = 2;
// A window without a wait in which at least this share of hand-overs found the ring full had
// a worker to spare (the others refilled the ring with time left over).
constexpr double kFullShare = 0.75;
// A starved window in which at least this share of hand-overs found the ring full saw a burst:
// the workers had time to spare, yet the ring ran dry.
constexpr double kBurstShare = 0.25;
// Surplus windows in a row that retire a worker at first. A retirement undone (a worker added
// again) within kFlapWindows windows doubles it, up to kMostCalm.
constexpr int kFirstCalm = 2;
constexpr int kMostCalm = 64;
constexpr int kFlapWindows = 4;
// Ring blocks per worker when workers are added: one being built while one waits, ready.
constexpr int kBlocksPerWorker = 2;
}  // namespace

Tuner::Tuner(const TuneLimits& limits, Shape start)
    : limits_(limits), calm_needed_(kFirstCalm), since_retired_(std::numeric_limits<int>::max() / 2) {
  limits_.max_threads = std::max(1, limits_.max_threads);
  limits_.busy_threads = std::clamp(limits_.busy_threads, 1, limits_.max_threads);
  limits_.max_prefetch = std::max(1, limits_.max_prefetch);
  limits_.window = std::max(1, limits_.window);
  shape_ = clamped(start);
  // A tuned ring starts with room for every worker that starts.
  if (limits_.auto_prefetch) grow_ring(kBlocksPerWorker * shape_.threads);
}

Shape Tuner::clamped(Shape s) const {
  if (limits_.auto_threads) s.threads = std::clamp(s.threads, 1, limits_.max_threads);
  if (limits_.auto_prefetch) s.prefetch = std::clamp(s.prefetch, 1, limits_.max_prefetch);
  s.threads = std::max(1, s.threads);
  s.prefetch = std::max(1, s.prefetch);
  return s;
}

void Tuner::force(Shape s) {
  shape_ = clamped(s);
  window_ = Window{};
  calm_run_ = 0;
}

bool Tuner::observe(const Handover& h) {
  if (!tuning()) return false;
  Window& w = window_;
  ++w.handovers;
  w.waited_s += h.waited_s;
  w.interval_s += h.interval_s;
  if (h.waited_s > 0) ++w.waits;
  if (h.ring_full) ++w.full;
  if (w.handovers < limits_.window) return false;
  const Shape before = shape_;
  decide(w);
  window_ = Window{};
  return shape_ != before;
}

void Tuner::decide(const Window& w) {
  since_retired_ = std::min(since_retired_ + 1, std::numeric_limits<int>::max() / 2);
  lend_run_ = w.waited_s > kLendShare * w.interval_s ? lend_run_ + 1 : 0;
  if (starved(w)) {
    calm_run_ = 0;
    // The ring ran dry though it was full at some hand-over: the workers keep up on average
    // but not through a burst (a slow block, a descheduled worker), which a deeper ring absorbs.
    if (w.full >= kBurstShare * static_cast<double>(w.handovers) && grow_ring(shape_.prefetch + 1)) return;
    // They fell behind: one more worker; at the cap, a deeper ring is all that is left to try
    // (it costs memory only for blocks actually built ahead).
    if (!add_worker(thread_cap())) grow_ring(shape_.prefetch + 1);
    return;
  }
  if (!surplus(w)) {
    calm_run_ = 0;
    return;
  }
  if (++calm_run_ >= calm_needed_) {
    calm_run_ = 0;
    retire_worker();
  }
}

bool Tuner::starved(const Window& w) const { return w.waited_s > kStarvedShare * w.interval_s; }

bool Tuner::surplus(const Window& w) const {
  return w.waits == 0 && w.full >= kFullShare * static_cast<double>(w.handovers);
}

int Tuner::thread_cap() const { return lend_run_ >= kLendWindows ? limits_.max_threads : limits_.busy_threads; }

bool Tuner::add_worker(int cap) {
  if (!limits_.auto_threads || shape_.threads >= cap) return false;
  ++shape_.threads;
  if (limits_.auto_prefetch) grow_ring(kBlocksPerWorker * shape_.threads);
  // Added back soon after one retired: the smaller count was not enough; be slower to retire.
  if (since_retired_ <= kFlapWindows) calm_needed_ = std::min(2 * calm_needed_, kMostCalm);
  return true;
}

bool Tuner::grow_ring(int blocks) {
  const int to = std::min(blocks, limits_.max_prefetch);
  if (!limits_.auto_prefetch || to <= shape_.prefetch) return false;
  shape_.prefetch = to;
  return true;
}

void Tuner::retire_worker() {
  if (!limits_.auto_threads || shape_.threads <= 1) return;
  --shape_.threads;
  since_retired_ = 0;
}

}  // namespace fastfeed
