// What the pipeline hands over: a block of consecutive batches, and who builds blocks.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dtype.hpp"

namespace fastfeed {

// One output array of a block: a pooled buffer, its element type and its shape.
struct Array {
  std::shared_ptr<std::byte> data;  // null: the block has no such output
  DType dtype = DType::Float32;
  std::vector<int64_t> shape;
  explicit operator bool() const { return data != nullptr; }
};

// A shape: `head` (rows, and steps for padded outputs) followed by a feature shape.
inline std::vector<int64_t> shape_of(std::vector<int64_t> head, const std::vector<int64_t>& tail) {
  head.insert(head.end(), tail.begin(), tail.end());
  return head;
}

// The outputs a block may carry; windows fill X and Y, whole sequences may fill all.
enum class Output : int { X, Y, Mask, Lengths, SegmentIds, PositionIds, CuSeqlens, Count };

struct Block {
  int64_t first_batch = 0;
  int64_t num_batches = 0;
  int64_t num_samples = 0;  // rows along the first axis of X
  std::array<Array, static_cast<int>(Output::Count)> arrays;
  // Set when a sample failed: rows before `failed_at` are valid, and `error` says why.
  int64_t failed_at = -1;
  std::string error;
  double build_seconds = 0;  // time a worker spent assembling it
  int64_t queued = 0;        // blocks ready behind it when it was handed over

  Array& operator[](Output o) { return arrays[static_cast<int>(o)]; }
  const Array& operator[](Output o) const { return arrays[static_cast<int>(o)]; }
};

// Builds block k (0-based) of a run. Called from several threads at once: must be const-safe.
class BlockBuilder {
 public:
  virtual ~BlockBuilder() = default;
  virtual int64_t num_blocks() const = 0;
  virtual Block build(int64_t k) const = 0;
};

}  // namespace fastfeed
