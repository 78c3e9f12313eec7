// Reusable output buffers. A buffer handed out returns to the pool when its last owner
// (a NumPy array or tensor in Python, or the pipeline) lets go, so memory is recycled
// without ever overwriting data someone still holds.
#pragma once
#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include <sys/types.h>

namespace fastfeed {

class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  // At most `max_idle` idle buffers are kept for reuse; the rest are freed. `pinned` buffers
  // are page-locked for asynchronous uploads to a GPU (ordinary memory when that fails).
  static std::shared_ptr<BufferPool> create(size_t max_idle, bool pinned = false);
  ~BufferPool();

  // A buffer of at least `bytes` bytes: an idle one that is large enough, or a new one.
  std::shared_ptr<std::byte> acquire(size_t bytes);
  size_t idle() const;

 private:
  struct Idle {
    std::byte* data;
    size_t capacity;
    bool pinned;
  };
  BufferPool(size_t max_idle, bool pinned);
  // A new buffer; `*pinned` says whether it came page-locked.
  std::byte* allocate(size_t bytes, bool* pinned) const;
  static void release(std::byte* p, bool pinned);
  void give_back(std::byte* p, size_t capacity, bool pinned);

  size_t max_idle_;
  bool pinned_;
  // The process that made the pool. In a child forked from it, a worker of the parent may have
  // held mu_ at the fork, for good: buffers released there never touch the pool.
  pid_t owner_;
  mutable std::mutex mu_;
  std::vector<Idle> free_;
};

// Buffers a pool keeps for reuse per output: one per prefetch slot, plus those the consumer
// holds. Pinned ones also cover the blocks whose uploads are still running (Python keeps up to
// 4 in flight): pinning and unpinning memory costs milliseconds and stalls the GPU's copies.
inline size_t idle_buffers(int prefetch, bool pinned) { return static_cast<size_t>(prefetch) + (pinned ? 8 : 2); }

}  // namespace fastfeed
