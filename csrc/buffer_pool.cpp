#include "buffer_pool.hpp"

#include <cstdlib>
#include <new>

namespace fastfeed {

std::shared_ptr<BufferPool> BufferPool::create(size_t bytes, size_t max_idle) {
  return std::shared_ptr<BufferPool>(new BufferPool(bytes, max_idle));
}

BufferPool::~BufferPool() {
  for (std::byte* p : free_) std::free(p);
}

std::byte* BufferPool::allocate(size_t bytes) {
  // Page alignment lets large buffers be pinned or mapped later; small ones stay cache-aligned.
  const size_t align = bytes >= 65536 ? 4096 : 64;
  void* p = nullptr;
  if (posix_memalign(&p, align, bytes == 0 ? align : bytes) != 0) throw std::bad_alloc();
  return static_cast<std::byte*>(p);
}

std::shared_ptr<std::byte> BufferPool::acquire() {
  std::byte* p = nullptr;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!free_.empty()) {
      p = free_.back();
      free_.pop_back();
    }
  }
  if (p == nullptr) p = allocate(bytes_);
  // The deleter holds the pool weakly: buffers outliving the pool are simply freed.
  std::weak_ptr<BufferPool> pool = weak_from_this();
  return std::shared_ptr<std::byte>(p, [pool](std::byte* q) {
    if (auto owner = pool.lock()) owner->give_back(q);
    else std::free(q);
  });
}

void BufferPool::give_back(std::byte* p) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (free_.size() < max_idle_) {
      free_.push_back(p);
      return;
    }
  }
  std::free(p);
}

size_t BufferPool::idle() const {
  std::lock_guard<std::mutex> lk(mu_);
  return free_.size();
}

}  // namespace fastfeed
