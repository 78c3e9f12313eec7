// What the pipeline hands over: a block of consecutive batches, and who builds blocks.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/dtype.hpp"

namespace fastfeed {

// One output array of a block: a pooled buffer, its element type and its shape.
struct Array {
  std::shared_ptr<std::byte> data;  // null: nothing was put in it yet
  DType dtype = DType::Float32;
  std::vector<int64_t> shape;
  // True when the first axis is the block's rows (samples): after a failed sample only the rows
  // before it are handed out. False for arrays indexed otherwise (cu_seqlens, a pieces table).
  bool per_row = true;
  explicit operator bool() const { return data != nullptr; }
};

// A shape: `head` (rows, and steps for padded outputs) followed by a feature shape.
inline std::vector<int64_t> shape_of(std::vector<int64_t> head, const std::vector<int64_t>& tail) {
  head.insert(head.end(), tail.begin(), tail.end());
  return head;
}

struct Block {
  int64_t first_batch = 0;
  int64_t num_batches = 0;
  int64_t num_samples = 0;  // rows along the first axis of the per-row fields
  // The outputs by name (see fields.hpp), in the order the builder set them. A builder adds an
  // output by setting it; whoever hands blocks on passes every field along without naming it.
  // Looked up per block, never per sample: builders take their pointers before their loops.
  std::vector<std::pair<std::string, Array>> fields;
  // Set when a sample failed: rows before `failed_at` are valid, and `error` says why.
  int64_t failed_at = -1;
  std::string error;
  double build_seconds = 0;  // time a worker spent assembling it
  int64_t queued = 0;        // blocks ready behind it when it was handed over
  // The pipeline's shape once it was handed over: workers claiming blocks, blocks built ahead
  // (0 for a block the consumer built itself, with no workers).
  int threads = 0;
  int prefetch = 0;

  // The field called `name`, added (empty) at the end if the block has none yet.
  Array& set(std::string_view name) {
    if (Array* a = find(name)) return *a;
    fields.emplace_back(std::string(name), Array{});
    return fields.back().second;
  }
  // The field called `name`, or null. A linear scan: a block carries a handful of fields.
  const Array* find(std::string_view name) const {
    for (const auto& f : fields) {
      if (f.first == name) return &f.second;
    }
    return nullptr;
  }
  Array* find(std::string_view name) { return const_cast<Array*>(std::as_const(*this).find(name)); }
};

// Builds block k (0-based) of a run. Called from several threads at once: must be const-safe.
class BlockBuilder {
 public:
  virtual ~BlockBuilder() = default;
  virtual int64_t num_blocks() const = 0;
  virtual Block build(int64_t k) const = 0;
};

}  // namespace fastfeed
