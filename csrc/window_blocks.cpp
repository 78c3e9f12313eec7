#include "window_blocks.hpp"

#include <algorithm>
#include <optional>

#include "errors.hpp"

namespace fastfeed {

int64_t WindowBlocks::batches_per_pass(int64_t per_rank, int64_t batch_size, bool drop_last) {
  return drop_last ? per_rank / batch_size : (per_rank + batch_size - 1) / batch_size;
}

WindowBlocks::WindowBlocks(std::shared_ptr<const Assembler> assembler, ShareSpec share, RunSpec run,
                           std::vector<int64_t> x_feat, std::vector<int64_t> y_feat, size_t max_idle, bool pinned,
                           bool starts_only)
    : assembler_(std::move(assembler)), share_(share), run_(run), starts_only_(starts_only) {
  if (run_.batch_size < 1 || run_.batches_per_block < 1 || run_.first_batch < 0 ||
      run_.end_batch < run_.first_batch || share_.n != assembler_->num_samples()) {
    throw ArgumentError("invalid window run");
  }
  const WindowSpec& spec = assembler_->index().spec();
  x_shape_tail_ = {spec.window};
  x_shape_tail_.insert(x_shape_tail_.end(), x_feat.begin(), x_feat.end());
  y_shape_tail_ = {spec.horizon};
  y_shape_tail_.insert(y_shape_tail_.end(), y_feat.begin(), y_feat.end());
  num_blocks_ = (run_.end_batch - run_.first_batch + run_.batches_per_block - 1) / run_.batches_per_block;
  x_pool_ = BufferPool::create(max_idle, pinned);
  if (assembler_->has_targets() && !starts_only_) y_pool_ = BufferPool::create(max_idle, pinned);
  if (starts_only_) x_shape_tail_.clear();
}


Block WindowBlocks::build(int64_t k) const {
  Block b;
  b.first_batch = run_.first_batch + k * run_.batches_per_block;
  const int64_t end_batch = std::min(b.first_batch + run_.batches_per_block, run_.end_batch);
  b.num_batches = end_batch - b.first_batch;
  const int64_t per_rank = share_.per_rank();
  const int64_t B = run_.batch_size;
  const int64_t first = b.first_batch * B;
  // A real epoch ends with the pass (its last batch may be short); a virtual one never does.
  const int64_t end = run_.steps_per_epoch > 0 ? end_batch * B : std::min(end_batch * B, per_rank);
  b.num_samples = end - first;

  const size_t xs = starts_only_ ? sizeof(int64_t) : assembler_->x_sample_bytes();
  const size_t ys = assembler_->y_sample_bytes();
  const size_t capacity = static_cast<size_t>(run_.batches_per_block * B);
  Array& x = b[Output::X];
  x.data = x_pool_->acquire(capacity * xs);
  x.dtype = starts_only_ ? DType::Int64 : assembler_->x_dtype();
  x.shape = shape_of({b.num_samples}, x_shape_tail_);
  if (y_pool_) {
    Array& y = b[Output::Y];
    y.data = y_pool_->acquire(capacity * ys);
    y.dtype = assembler_->y_dtype();
    y.shape = shape_of({b.num_samples}, y_shape_tail_);
  }

  std::optional<PassOrder> order;
  uint64_t order_pass = 0;
  int64_t first_sample = 0;  // named if a file change spoils the block
  std::byte* xp = x.data.get();
  std::byte* yp = y_pool_ ? b[Output::Y].data.get() : nullptr;
  for (int64_t i = 0; i < b.num_samples; ++i) {
    const StreamPosition at = locate_in_stream(run_, first + i, run_.steps_per_epoch * B, per_rank);
    if (!order || order_pass != at.pass) {
      order.emplace(share_, at.pass);
      order_pass = at.pass;
    }
    const int64_t sample = order->sample_at(at.index);
    if (i == 0) first_sample = sample;
    if (starts_only_) {
      reinterpret_cast<int64_t*>(xp)[i] = assembler_->flat_start(sample);
      continue;
    }
    try {
      assembler_->fill_sample(sample, xp + i * xs, yp ? yp + i * ys : nullptr);
    } catch (const std::exception& e) {
      b.failed_at = i;
      b.error = assembler_->describe(sample) + ": " + e.what();
      break;
    }
  }
  const std::string changed = assembler_->file_problem();
  if (!changed.empty()) {  // a shrunk file reads as zeros: none of the block can be trusted
    b.failed_at = 0;
    b.error = assembler_->describe(first_sample) + " onwards: the source file changed while the epoch ran: " +
              changed;
  }
  return b;
}

}  // namespace fastfeed
