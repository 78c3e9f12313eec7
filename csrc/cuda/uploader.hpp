// Host-to-device copies on a side stream. Each upload's copies are fenced by an event that the
// consumer's stream waits for (on the GPU, never the CPU), so the next batch crosses the bus
// while the caller still computes on the current one. Plain C++: no CUDA headers here, and a
// build without CUDA gets a constructor that refuses (csrc/cuda/no_cuda.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace fastfeed::cuda {

struct Copy {
  const void* src;  // page-locked host memory: the copy runs asynchronously
  void* dst;        // device memory
  size_t bytes;
};

class Uploader {
 public:
  // `stream` is the copy stream (a cudaStream_t as an integer; PyTorch creates it, so its
  // caching allocator knows the stream the destination memory was allocated for).
  Uploader(int device, uintptr_t stream);
  ~Uploader();
  Uploader(const Uploader&) = delete;
  Uploader& operator=(const Uploader&) = delete;

  // Queues `copies` on the copy stream and makes `consumer` wait for them. Returns a ticket:
  // tickets count up from 1, and a ticket <= finished() means its source memory may be reused.
  uint64_t upload(const std::vector<Copy>& copies, uintptr_t consumer);
  // The newest ticket whose copies have all completed (0 when none has).
  uint64_t finished();
  // Waits until the copies of `ticket` (and all before it) have completed.
  void wait(uint64_t ticket);
  // Waits until every queued copy has completed.
  void synchronize();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fastfeed::cuda
