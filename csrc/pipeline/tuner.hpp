// How many of the pipeline's workers claim blocks and how many blocks they build ahead: fixed
// (the caller said), or tuned while feeding from what the consumer's next() sees: how long it
// waited for each block, and whether the ring was full when it came. No threads, no locks:
// the pipeline calls it under its own mutex, once per block handed over.
#pragma once
#include <cstdint>

namespace fastfeed {

// The pipeline's shape: workers allowed to claim blocks, and blocks built ahead (the ring's depth).
struct Shape {
  int threads = 1;
  int prefetch = 1;
  bool operator==(const Shape& o) const { return threads == o.threads && prefetch == o.prefetch; }
  bool operator!=(const Shape& o) const { return !(*this == o); }
};

// What the tuner may change, and how far. Without auto_threads or auto_prefetch the shape
// never changes: explicit values are obeyed exactly.
struct TuneLimits {
  bool auto_threads = false;
  bool auto_prefetch = false;
  // Workers started: the most that ever claim blocks. Auto: every core this process may use,
  // the last only while the consumer waits more than a tenth of its time (see busy_threads).
  int max_threads = 1;
  // Auto: the most workers while the consumer computes: the cores less the consumer's own, so
  // that the training loop's thread never competes with the workers for a core.
  int busy_threads = 1;
  int max_prefetch = 1;  // ring slots: the most blocks ever built ahead (the memory budget)
  int window = 16;       // hand-overs between two decisions
};

// What next() saw when it handed a block over.
struct Handover {
  double waited_s = 0;     // how long the consumer waited for this block
  double interval_s = 0;   // since the previous hand-over: the consumer's step and its wait
  bool ring_full = false;  // every slot of the ring held a finished block
};

// Decides once per window of `TuneLimits::window` hand-overs:
//  - starved (the consumer waited more than 2% of the window's time): if the ring was full at
//    a quarter of the window's hand-overs or more, the workers keep up on average but not
//    through a burst, so the ring grows by a block; otherwise they fell behind, so one more
//    worker claims blocks
//    (up to busy_threads, or max_threads when the consumer waited more than a tenth of the
//    time in two windows in a row: lending its core to one more worker then shortens its steps
//    more than sharing the core lengthens them), with two blocks of ring per worker; at the
//    worker cap, the ring grows instead;
//  - surplus (no wait at all, the ring full at 3/4 of the hand-overs or more) for a few windows
//    in a row: one worker retires (never the last). The windows needed double each time a
//    retirement is undone soon after, so a count that is just enough is not retired over and
//    over.
// The ring never shrinks: its blocks' buffers are pooled and recycled, so a shallower ring
// would free nothing the pool does not keep anyway.
class Tuner {
 public:
  Tuner(const TuneLimits& limits, Shape start);

  // Counts a hand-over; at the end of a window decides. True when the shape changed.
  bool observe(const Handover& h);
  // Sets the shape (clamped to the limits), as a decision would; tuning goes on from there.
  void force(Shape s);

  bool tuning() const { return limits_.auto_threads || limits_.auto_prefetch; }
  Shape shape() const { return shape_; }
  const TuneLimits& limits() const { return limits_; }

 private:
  struct Window {
    int handovers = 0;
    int waits = 0;  // hand-overs the consumer had to wait for
    int full = 0;   // hand-overs that found the ring full
    double waited_s = 0;
    double interval_s = 0;
  };

  void decide(const Window& w);
  bool starved(const Window& w) const;
  bool surplus(const Window& w) const;
  int thread_cap() const;
  bool add_worker(int cap);
  bool grow_ring(int blocks);
  void retire_worker();
  Shape clamped(Shape s) const;

  TuneLimits limits_;
  Shape shape_;
  Window window_;
  int calm_run_ = 0;       // surplus windows in a row
  int lend_run_ = 0;       // windows in a row in which the consumer waited more than a tenth
  int calm_needed_;        // surplus windows in a row that retire a worker
  int since_retired_;      // windows since the last retirement
};

}  // namespace fastfeed
