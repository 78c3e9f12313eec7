#include "pipeline/buffer_pool.hpp"

#include <cstdlib>
#include <new>

#include <unistd.h>

#include "cuda/cuda_runtime.hpp"

namespace fastfeed {

std::shared_ptr<BufferPool> BufferPool::create(size_t max_idle, bool pinned) {
  return std::shared_ptr<BufferPool>(new BufferPool(max_idle, pinned));
}

BufferPool::BufferPool(size_t max_idle, bool pinned) : max_idle_(max_idle), pinned_(pinned), owner_(::getpid()) {}

BufferPool::~BufferPool() {
  for (const Idle& b : free_) release(b.data, b.pinned);
}

void BufferPool::release(std::byte* p, bool pinned) {
  if (pinned) {
    cuda::host_free(p);
  } else {
    std::free(p);
  }
}

std::byte* BufferPool::allocate(size_t bytes, bool* pinned) const {
  if (pinned_) {
    if (void* p = cuda::host_alloc(bytes)) {
      *pinned = true;
      return static_cast<std::byte*>(p);
    }
  }
  *pinned = false;
  // Page alignment lets large buffers be pinned or mapped later; small ones stay cache-aligned.
  const size_t align = bytes >= 65536 ? 4096 : 64;
  void* p = nullptr;
  if (posix_memalign(&p, align, bytes == 0 ? align : bytes) != 0) throw std::bad_alloc();
  return static_cast<std::byte*>(p);
}

std::shared_ptr<std::byte> BufferPool::acquire(size_t bytes) {
  std::byte* p = nullptr;
  size_t capacity = 0;
  bool pinned = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    // The smallest idle buffer that fits: padded batches vary in size from one to the next.
    size_t best = free_.size();
    for (size_t i = 0; i < free_.size(); ++i) {
      if (free_[i].capacity >= bytes && (best == free_.size() || free_[i].capacity < free_[best].capacity)) {
        best = i;
      }
    }
    if (best < free_.size()) {
      p = free_[best].data;
      capacity = free_[best].capacity;
      pinned = free_[best].pinned;
      free_[best] = free_.back();
      free_.pop_back();
    }
  }
  if (p == nullptr) {
    capacity = bytes;
    p = allocate(capacity, &pinned);
  }
  // The deleter holds the pool weakly: buffers outliving the pool are simply freed.
  std::weak_ptr<BufferPool> pool = weak_from_this();
  return std::shared_ptr<std::byte>(p, [pool, capacity, pinned](std::byte* q) {
    if (auto owner = pool.lock()) owner->give_back(q, capacity, pinned);
    else release(q, pinned);
  });
}

void BufferPool::give_back(std::byte* p, size_t capacity, bool pinned) {
  if (::getpid() != owner_) {  // a forked child: the pool's lock may be held by a thread that is gone
    if (!pinned) std::free(p);  // (page-locked memory belongs to the parent's CUDA context: left alone)
    return;
  }
  std::byte* evict = p;
  bool evict_pinned = pinned;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (free_.size() < max_idle_) {
      free_.push_back({p, capacity, pinned});
      return;
    }
    // Full: keep the larger buffers, they can serve any request the smaller ones could.
    size_t smallest = 0;
    for (size_t i = 1; i < free_.size(); ++i) {
      if (free_[i].capacity < free_[smallest].capacity) smallest = i;
    }
    if (!free_.empty() && free_[smallest].capacity < capacity) {
      evict = free_[smallest].data;
      evict_pinned = free_[smallest].pinned;
      free_[smallest] = {p, capacity, pinned};
    }
  }
  release(evict, evict_pinned);
}

size_t BufferPool::idle() const {
  std::lock_guard<std::mutex> lk(mu_);
  return free_.size();
}

}  // namespace fastfeed
