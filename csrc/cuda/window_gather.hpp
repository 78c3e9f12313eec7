// Windows gathered on the GPU from a source kept in device memory (device_cache=True). Per
// batch only the samples' start rows cross the bus: they go through a small ring of pinned
// staging slots, each reused only after the event of its last gather has passed.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace fastfeed::cuda {

// For every sample i: out[i, j] = src[starts[i] + first + j * stride] for j in [0, steps),
// each a row of `row_bytes` bytes. x and y of a window batch are two of these.
struct RowGather {
  const void* src;  // device memory: the rows of the source, back to back
  void* out;        // device memory: samples * steps rows
  size_t row_bytes;
  int64_t first;
  int64_t steps;
  int64_t stride;
};

class WindowGather {
 public:
  explicit WindowGather(int device);
  ~WindowGather();
  WindowGather(const WindowGather&) = delete;
  WindowGather& operator=(const WindowGather&) = delete;

  // Queues the gathers of `n` samples on `stream` (a cudaStream_t as an integer): one copy of
  // the starts, one kernel per RowGather. Returns once they are queued.
  void gather(const int64_t* starts, size_t n, const std::vector<RowGather>& parts, uintptr_t stream);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fastfeed::cuda
