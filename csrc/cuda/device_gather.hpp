// Batches gathered on the GPU from a source kept in device memory (device_cache=True): windows
// by their start rows, whole sequences by the pieces of their rows. Per batch only these
// indices cross the bus, through a small ring of pinned staging slots, each reused only after
// the event of its last gather has passed.
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

// For every piece (row, col, seq, first, count, segment), six int64 as csrc/sequence_blocks.hpp
// lays them out: out[row, col + t] = src[seq_offsets[seq] + first + t] for t in [0, count).
// Where given, mask[row, col + t] = true, segment_ids[...] = segment, position_ids[...] = t
// (the caller fills pad values and zeros first).
struct PieceGather {
  const void* src;
  void* out;  // rows x length steps
  size_t row_bytes;
  int64_t length;
  bool* mask;
  int32_t* segment_ids;
  int64_t* position_ids;
};

class DeviceGather {
 public:
  explicit DeviceGather(int device);
  ~DeviceGather();
  DeviceGather(const DeviceGather&) = delete;
  DeviceGather& operator=(const DeviceGather&) = delete;

  // Queues the gathers of `n` samples on `stream` (a cudaStream_t as an integer): one copy of
  // the starts, one kernel per RowGather. Returns once they are queued.
  void gather_windows(const int64_t* starts, size_t n, const std::vector<RowGather>& parts, uintptr_t stream);
  // The same for `n` pieces of whole sequences; `seq_offsets` (device memory) holds where each
  // sequence starts in the source.
  void gather_pieces(const int64_t* pieces, size_t n, const int64_t* seq_offsets, const std::vector<PieceGather>& parts,
                     uintptr_t stream);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fastfeed::cuda
