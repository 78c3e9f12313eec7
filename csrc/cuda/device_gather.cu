#include <algorithm>
#include <array>
#include <mutex>

#include "cuda/check.cuh"
#include "cuda/device_gather.hpp"

namespace fastfeed::cuda {
namespace {

// Copies n vectors, o[k] = s[at(k)], with the threads of a block: each loads kUnroll vectors
// before storing any, so that enough loads are in flight to cover the memory latency.
constexpr int kUnroll = 4;

template <typename V, typename At>
__device__ void copy_vectors(V* __restrict__ o, const V* __restrict__ s, int64_t n, At at) {
  for (int64_t base = threadIdx.x; base < n; base += static_cast<int64_t>(blockDim.x) * kUnroll) {
    V r[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t k = base + static_cast<int64_t>(u) * blockDim.x;
      if (k < n) r[u] = s[at(k)];
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t k = base + static_cast<int64_t>(u) * blockDim.x;
      if (k < n) o[k] = r[u];
    }
  }
}

// One thread block per sample, its rows in vectors of V bytes. With stride 1 a sample's rows
// are contiguous in the source too.
template <typename V>
__global__ void gather_rows(const V* __restrict__ src, V* __restrict__ out, const int64_t* __restrict__ starts,
                            int64_t row_vecs, int64_t first, int64_t steps, int64_t stride) {
  const int64_t sample = blockIdx.x;
  const int64_t per_sample = steps * row_vecs;
  V* o = out + sample * per_sample;
  const V* s = src + (starts[sample] + first) * row_vecs;
  if (stride == 1) {
    copy_vectors(o, s, per_sample, [](int64_t k) { return k; });
  } else {
    const int64_t step_vecs = stride * row_vecs;
    copy_vectors(o, s, per_sample, [=](int64_t k) {
      const int64_t step = k / row_vecs;
      return step * step_vecs + (k - step * row_vecs);
    });
  }
}

// One thread block per piece of a sequence batch: its steps, then the piece's mask, segment
// and position ids (when asked for).
template <typename V>
__global__ void gather_piece_rows(const V* __restrict__ src, V* __restrict__ out, const int64_t* __restrict__ pieces,
                                  const int64_t* __restrict__ seq_offsets, int64_t row_vecs, int64_t length,
                                  bool* mask, int32_t* segment_ids, int64_t* position_ids) {
  const int64_t* p = pieces + 6 * static_cast<int64_t>(blockIdx.x);
  const int64_t row = p[0], col = p[1], seq = p[2], first = p[3], count = p[4], segment = p[5];
  const int64_t at = row * length + col;
  copy_vectors(out + at * row_vecs, src + (seq_offsets[seq] + first) * row_vecs, count * row_vecs,
               [](int64_t k) { return k; });
  for (int64_t t = threadIdx.x; t < count; t += blockDim.x) {
    if (mask != nullptr) mask[at + t] = true;
    if (segment_ids != nullptr) segment_ids[at + t] = static_cast<int32_t>(segment);
    if (position_ids != nullptr) position_ids[at + t] = t;
  }
}

struct alignas(16) Vec16 { uint4 v; };

// The widest vector (16, 8, 4, 2 or 1 bytes) that every row of `g` is aligned to.
template <typename G>
size_t vector_bytes(const G& g) {
  const auto bits = reinterpret_cast<uintptr_t>(g.src) | reinterpret_cast<uintptr_t>(g.out) | g.row_bytes;
  for (size_t v : {16, 8, 4, 2}) {
    if (bits % v == 0) return v;
  }
  return 1;
}

// A warp at least; 256 threads for work big enough to keep them busy.
int threads_for(int64_t vectors) {
  const int64_t per_thread_group = (vectors + kUnroll - 1) / kUnroll;
  return static_cast<int>(std::clamp<int64_t>((per_thread_group + 31) / 32 * 32, 32, 256));
}

template <typename V>
void launch(const RowGather& g, const int64_t* starts, size_t n, cudaStream_t stream) {
  const int64_t row_vecs = static_cast<int64_t>(g.row_bytes / sizeof(V));
  const int64_t per_sample = row_vecs * g.steps;
  const int threads = threads_for(per_sample);
  gather_rows<V><<<static_cast<unsigned>(n), threads, 0, stream>>>(
      static_cast<const V*>(g.src), static_cast<V*>(g.out), starts, row_vecs, g.first, g.steps, g.stride);
  check(cudaGetLastError(), "launching the window gather kernel");
}

template <typename V>
void launch(const PieceGather& g, const int64_t* pieces, size_t n, const int64_t* seq_offsets, int64_t longest,
            cudaStream_t stream) {
  const int64_t row_vecs = static_cast<int64_t>(g.row_bytes / sizeof(V));
  gather_piece_rows<V><<<static_cast<unsigned>(n), threads_for(longest * row_vecs), 0, stream>>>(
      static_cast<const V*>(g.src), static_cast<V*>(g.out), pieces, seq_offsets, row_vecs, g.length, g.mask,
      g.segment_ids, g.position_ids);
  check(cudaGetLastError(), "launching the sequence gather kernel");
}

// Calls launch<V> with the widest vector type the rows of `g` allow.
template <typename G, typename... Args>
void launch_widest(const G& g, Args... args) {
  switch (vector_bytes(g)) {
    case 16: launch<Vec16>(g, args...); break;
    case 8: launch<uint64_t>(g, args...); break;
    case 4: launch<uint32_t>(g, args...); break;
    case 2: launch<uint16_t>(g, args...); break;
    default: launch<uint8_t>(g, args...); break;
  }
}

}  // namespace

// A few staging slots: the indices of gather k go through slot k % size, which is reused only
// after the event recorded behind that gather's kernels (they read the device copy) has passed.
struct DeviceGather::Impl {
  struct Slot {
    int64_t* host = nullptr;  // pinned
    int64_t* dev = nullptr;
    size_t capacity = 0;      // in starts
    cudaEvent_t done = nullptr;
  };
  int device = 0;
  std::mutex mu;
  std::array<Slot, 4> slots;
  size_t next = 0;

  Slot& slot_for(size_t n) {
    Slot& s = slots[next];
    next = (next + 1) % slots.size();
    if (s.done == nullptr) check(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming), "cudaEventCreate");
    check(cudaEventSynchronize(s.done), "cudaEventSynchronize");
    if (s.capacity < n) {
      release(s);
      const size_t cap = std::max<size_t>(n, 4096);
      check(cudaHostAlloc(reinterpret_cast<void**>(&s.host), cap * sizeof(int64_t), cudaHostAllocDefault),
            "cudaHostAlloc");
      check(cudaMalloc(reinterpret_cast<void**>(&s.dev), cap * sizeof(int64_t)), "cudaMalloc");
      s.capacity = cap;
    }
    return s;
  }

  // Copies `n` int64 to the device through the next slot; the caller records slot.done after
  // the kernels that read them.
  Slot& stage(const int64_t* values, size_t n, cudaStream_t stream) {
    Slot& slot = slot_for(n);
    std::copy(values, values + n, slot.host);
    check(cudaMemcpyAsync(slot.dev, slot.host, n * sizeof(int64_t), cudaMemcpyHostToDevice, stream),
          "cudaMemcpyAsync");
    return slot;
  }

  static void release(Slot& s) {
    if (s.host != nullptr) cudaFreeHost(s.host);
    if (s.dev != nullptr) cudaFree(s.dev);
    s.host = nullptr;
    s.dev = nullptr;
    s.capacity = 0;
  }
};

DeviceGather::DeviceGather(int device) : impl_(std::make_unique<Impl>()) { impl_->device = device; }

DeviceGather::~DeviceGather() {
  cudaSetDevice(impl_->device);
  for (auto& s : impl_->slots) {
    if (s.done != nullptr) {
      cudaEventSynchronize(s.done);
      cudaEventDestroy(s.done);
    }
    Impl::release(s);
  }
}

void DeviceGather::gather_windows(const int64_t* starts, size_t n, const std::vector<RowGather>& parts,
                                  uintptr_t stream) {
  if (n == 0) return;
  std::lock_guard<std::mutex> lk(impl_->mu);
  use_device(impl_->device);
  auto s = reinterpret_cast<cudaStream_t>(stream);
  Impl::Slot& slot = impl_->stage(starts, n, s);
  for (const RowGather& g : parts) {
    if (g.steps > 0 && g.row_bytes > 0) launch_widest(g, slot.dev, n, s);
  }
  check(cudaEventRecord(slot.done, s), "cudaEventRecord");
}

void DeviceGather::gather_pieces(const int64_t* pieces, size_t n, const int64_t* seq_offsets,
                                 const std::vector<PieceGather>& parts, uintptr_t stream) {
  if (n == 0) return;
  int64_t longest = 1;
  for (size_t i = 0; i < n; ++i) longest = std::max(longest, pieces[6 * i + 4]);
  std::lock_guard<std::mutex> lk(impl_->mu);
  use_device(impl_->device);
  auto s = reinterpret_cast<cudaStream_t>(stream);
  Impl::Slot& slot = impl_->stage(pieces, 6 * n, s);
  for (const PieceGather& g : parts) {
    if (g.row_bytes > 0) launch_widest(g, slot.dev, n, seq_offsets, longest, s);
  }
  check(cudaEventRecord(slot.done, s), "cudaEventRecord");
}

}  // namespace fastfeed::cuda
