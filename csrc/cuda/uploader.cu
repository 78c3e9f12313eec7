#include <deque>
#include <mutex>
#include <utility>

#include "cuda/check.cuh"
#include "cuda/uploader.hpp"

namespace fastfeed::cuda {

struct Uploader::Impl {
  int device = 0;
  cudaStream_t stream = nullptr;
  std::mutex mu;
  uint64_t issued = 0;
  uint64_t done = 0;
  std::deque<std::pair<uint64_t, cudaEvent_t>> pending;  // in ticket order
  std::vector<cudaEvent_t> spare;                        // events free for reuse

  cudaEvent_t take_event() {
    if (!spare.empty()) {
      cudaEvent_t e = spare.back();
      spare.pop_back();
      return e;
    }
    cudaEvent_t e = nullptr;
    check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    return e;
  }

  // Retires the events that have passed; they complete in ticket order on one stream.
  void retire() {
    while (!pending.empty()) {
      const cudaError_t q = cudaEventQuery(pending.front().second);
      if (q == cudaErrorNotReady) {
        cudaGetLastError();
        break;
      }
      check(q, "cudaEventQuery");
      done = pending.front().first;
      spare.push_back(pending.front().second);
      pending.pop_front();
    }
  }
};

Uploader::Uploader(int device, uintptr_t stream) : impl_(std::make_unique<Impl>()) {
  impl_->device = device;
  impl_->stream = reinterpret_cast<cudaStream_t>(stream);
}

Uploader::~Uploader() {
  try {
    synchronize();
  } catch (...) {
    // A broken context: nothing is left to wait for.
  }
  for (auto& p : impl_->pending) cudaEventDestroy(p.second);
  for (cudaEvent_t e : impl_->spare) cudaEventDestroy(e);
}

uint64_t Uploader::upload(const std::vector<Copy>& copies, uintptr_t consumer) {
  std::lock_guard<std::mutex> lk(impl_->mu);
  use_device(impl_->device);
  for (const Copy& c : copies) {
    if (c.bytes == 0) continue;
    check(cudaMemcpyAsync(c.dst, c.src, c.bytes, cudaMemcpyHostToDevice, impl_->stream), "cudaMemcpyAsync");
  }
  cudaEvent_t ev = impl_->take_event();
  check(cudaEventRecord(ev, impl_->stream), "cudaEventRecord");
  check(cudaStreamWaitEvent(reinterpret_cast<cudaStream_t>(consumer), ev, 0), "cudaStreamWaitEvent");
  const uint64_t ticket = ++impl_->issued;
  impl_->pending.emplace_back(ticket, ev);
  impl_->retire();
  return ticket;
}

uint64_t Uploader::finished() {
  std::lock_guard<std::mutex> lk(impl_->mu);
  use_device(impl_->device);
  impl_->retire();
  return impl_->done;
}

void Uploader::wait(uint64_t ticket) {
  std::lock_guard<std::mutex> lk(impl_->mu);
  use_device(impl_->device);
  for (const auto& [t, ev] : impl_->pending) {
    if (t >= ticket) {
      check(cudaEventSynchronize(ev), "cudaEventSynchronize");
      break;
    }
  }
  impl_->retire();
}

void Uploader::synchronize() {
  std::lock_guard<std::mutex> lk(impl_->mu);
  if (impl_->pending.empty()) return;
  use_device(impl_->device);
  check(cudaEventSynchronize(impl_->pending.back().second), "cudaEventSynchronize");
  impl_->retire();
}

}  // namespace fastfeed::cuda
