// The prefetching pipeline: worker threads build blocks of whole batches into pooled
// buffers, at most `prefetch` blocks ahead of the consumer, and hand them over in order.
// How many workers claim blocks and how far ahead they build is the pipeline's shape: fixed,
// or tuned while feeding (tuner.hpp) from what the consumer's next() sees.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <sys/types.h>

#include "pipeline/block.hpp"
#include "pipeline/tuner.hpp"

namespace fastfeed {

class Pipeline {
 public:
  enum class Status { Ready, Timeout, Finished };

  // A fixed shape: `num_threads` workers, `prefetch` blocks ahead.
  Pipeline(std::shared_ptr<const BlockBuilder> builder, int num_threads, int prefetch);
  // Starts at `start`, within `limits`: every worker the limits allow is started, but only
  // the shape's `threads` claim blocks; the others wait, parked, until the tuner needs them.
  Pipeline(std::shared_ptr<const BlockBuilder> builder, const TuneLimits& limits, Shape start);
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // The next block in order, waiting at most `timeout` (so a caller can look for signals).
  // In a process forked from the one that made the pipeline, throws std::runtime_error: the
  // workers exist only in the parent.
  Status next(Block* out, std::chrono::milliseconds timeout);
  // Stops the workers and joins them; blocks not yet delivered are dropped. Idempotent. In a
  // forked child it joins nothing and frees nothing (see abandon()).
  void close();

  // The shape now: workers claiming blocks and blocks built ahead ({0, 0} in a forked child).
  Shape shape() const;
  // Sets the shape, within the limits, as the tuner would (tuning goes on from there): tests
  // change it in the middle of an epoch to show that the batches never depend on it.
  void retune(Shape s);

  int64_t num_blocks() const { return num_blocks_; }

 private:
  // Everything the workers touch. A forked child leaks it rather than destroy it: see abandon().
  struct State {
    State(const TuneLimits& limits, Shape start) : tuner(limits, start), shape(tuner.shape()) {}

    std::shared_ptr<const BlockBuilder> builder;
    int64_t num_blocks = 0;

    struct Slot {
      int64_t block = -1;  // which block the slot holds, -1 when empty
      Block data;
    };

    std::mutex close_mu;  // serialises close(): held while joining, so workers only shrinks under it
    std::mutex mu;        // guards everything below
    std::condition_variable ready_cv;  // a slot was filled (the consumer waits)
    std::condition_variable space_cv;  // the consumer moved on, or we stop (workers wait)
    std::condition_variable park_cv;   // the tuner wants more workers, or we stop (parked workers wait)
    // Block k goes to slots[k % slots.size()]. The ring has a slot for the deepest prefetch
    // the limits allow, so that a deeper `shape.prefetch` never moves a block already placed.
    std::vector<Slot> slots;
    Tuner tuner;
    Shape shape;  // the tuner's, clamped to the workers started
    int64_t next_to_claim = 0;
    int64_t next_to_deliver = 0;
    bool stopping = false;
    // What the tuner needs of the consumer: when it last got a block, and how long it waited
    // in calls to next() that timed out before this block came.
    std::chrono::steady_clock::time_point last_handover;
    double earlier_wait_s = 0;
    std::vector<std::thread> workers;
    State* next_abandoned = nullptr;  // the list of abandoned states (abandoned_)

    void run_worker(int index);
    bool wait_to_claim(std::unique_lock<std::mutex>& lk, int index);
    int64_t ready_behind(int64_t k) const;
    bool tune(double waited_s, int64_t queued);
    void set_shape(Shape s);
  };

  void start_workers(int threads);
  // In a child forked while the workers ran (or might have), they do not exist: joining them
  // fails, and whatever they held at the fork (the mutex, a buffer pool's lock, a condition
  // variable's count of waiters, a half-built block) stays held forever, so that destroying
  // it would hang or abort. The child touches none of it: the state is leaked, never destroyed.
  void abandon();
  bool foreign() const;  // true in a process other than the one that made the pipeline

  // The states this process abandoned, kept reachable so that leak checkers see them as held.
  static std::atomic<State*> abandoned_;

  std::unique_ptr<State> state_;  // null once abandoned
  int64_t num_blocks_ = 0;
  pid_t owner_;  // the process whose threads are the workers
};

}  // namespace fastfeed
