// Reusable output buffers. A buffer handed out returns to the pool when its last owner
// (a NumPy array or tensor in Python, or the pipeline) lets go, so memory is recycled
// without ever overwriting data someone still holds.
#pragma once
#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

namespace fastfeed {

class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  // Buffers of `bytes` bytes; at most `max_idle` are kept for reuse, the rest are freed.
  static std::shared_ptr<BufferPool> create(size_t bytes, size_t max_idle);
  ~BufferPool();

  // A free buffer, or a new one when none is free.
  std::shared_ptr<std::byte> acquire();
  size_t buffer_bytes() const { return bytes_; }
  size_t idle() const;

 private:
  BufferPool(size_t bytes, size_t max_idle) : bytes_(bytes), max_idle_(max_idle) {}
  static std::byte* allocate(size_t bytes);
  void give_back(std::byte* p);

  size_t bytes_;
  size_t max_idle_;
  mutable std::mutex mu_;
  std::vector<std::byte*> free_;
};

}  // namespace fastfeed
