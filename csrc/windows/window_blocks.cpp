#include "windows/window_blocks.hpp"

#include <algorithm>
#include <optional>
#include <string>

#include "common/errors.hpp"
#include "pipeline/fields.hpp"

namespace fastfeed {

WindowBlocks::WindowBlocks(std::shared_ptr<const Assembler> assembler, const OrderSpec& order, const RunSpec& run,
                           std::shared_ptr<const MixOrder> mix)
    : assembler_(std::move(assembler)), mix_(std::move(mix)), order_(order), run_(run) {
  if (mix_ && order.steps_per_epoch <= 0) throw ArgumentError("a mixture needs virtual epochs (steps_per_epoch)");
  run_.validate();
  units_ = assembler_->units();
  sizes_ = epoch_sizes(units_, order_, run_.epoch);  // validates the order
  const bool streamed = order_.steps_per_epoch > 0;
  const auto resumed = static_cast<uint64_t>(order_.resume_pass);
  first_pass_ = streamed ? stream_share_size(order_, units_, resumed) : pass_share_size(order_, units_, resumed);
  per_pass_ = streamed ? stream_share_size(order_, units_, resumed + 1) : sizes_.per_rank;
  const int64_t end_batch = sizes_.batches_per_epoch;
  if (run_.first_batch > end_batch) {
    throw ArgumentError("RunSpec.first_batch must be <= the epoch's " + std::to_string(end_batch) + " batches, got " +
                        std::to_string(run_.first_batch));
  }
  // Virtual epochs stream the passes: a pass with nothing for this rank would never end one.
  // (A resumed pass with fewer than world_size samples left is simply over: locate_sample moves on.)
  if (streamed && per_pass_ == 0 && !mix_) {
    // (a mixture streams its components on)
    throw ArgumentError("a pass holds fewer samples than world_size: no rank can stream through it");
  }
  num_blocks_ = (end_batch - run_.first_batch + run_.batches_per_block - 1) / run_.batches_per_block;
  const size_t max_idle = idle_buffers(run_.ring_slots(), run_.pinned);
  const size_t arrays = run_.indices_only ? 1 : assembler_->layouts().size();
  for (size_t i = 0; i < arrays + (mix_ ? 1 : 0); ++i) pools_.push_back(BufferPool::create(max_idle, run_.pinned));
  for (size_t i = 0; i < assembler_->layouts().size(); ++i) {
    if (assembler_->layouts()[i].name == field::kSeries) series_slot_ = static_cast<int>(i);
  }
}

Block WindowBlocks::build(int64_t k) const {
  Block b;
  b.first_batch = run_.first_batch + k * run_.batches_per_block;
  const int64_t end_batch = std::min(b.first_batch + run_.batches_per_block, sizes_.batches_per_epoch);
  b.num_batches = end_batch - b.first_batch;
  const int64_t per_rank = sizes_.per_rank;
  const int64_t B = order_.batch_size;
  const int64_t first = b.first_batch * B;
  // A real epoch ends with the pass (its last batch may be short); a virtual one never does.
  const int64_t end = order_.steps_per_epoch > 0 ? end_batch * B : std::min(end_batch * B, per_rank);
  b.num_samples = end - first;

  const bool indices = run_.indices_only;
  const size_t capacity = static_cast<size_t>(run_.batches_per_block * B);
  // The fields are named once here; the loop below writes through plain pointers.
  const std::vector<FieldLayout> starts_only{{std::string(field::kStarts), DType::Int64, {}, sizeof(int64_t)}};
  const std::vector<FieldLayout>& layouts = indices ? starts_only : assembler_->layouts();
  std::vector<std::byte*> base(layouts.size()), dst(layouts.size());
  b.fields.reserve(layouts.size() + 1);
  for (size_t f = 0; f < layouts.size(); ++f) {
    Array& a = b.set(layouts[f].name);
    a.data = pools_[f]->acquire(capacity * layouts[f].sample_bytes);
    a.dtype = layouts[f].dtype;
    a.shape = shape_of({b.num_samples}, layouts[f].tail);
    base[f] = a.data.get();
  }

  std::vector<int64_t> samples(static_cast<size_t>(b.num_samples)), components(samples.size());
  samples_of(first, b.num_samples, samples.data(), components.data());
  // A mixture's batches say where each sample comes from (with with_index, beside series and start).
  int64_t* source = nullptr;
  if (mix_ && series_slot_ >= 0) {
    Array& a = b.set(field::kSource);
    a.data = pools_.back()->acquire(capacity * sizeof(int64_t));
    a.dtype = DType::Int64;
    a.shape = {b.num_samples};
    source = reinterpret_cast<int64_t*>(a.data.get());
  }
  int64_t first_sample = 0;  // named if a file change spoils the block
  for (int64_t i = 0; i < b.num_samples; ++i) {
    const int64_t sample = samples[static_cast<size_t>(i)];
    if (i == 0) first_sample = sample;
    if (indices) {
      reinterpret_cast<int64_t*>(base[0])[i] = assembler_->flat_start(sample);
      continue;
    }
    for (size_t f = 0; f < layouts.size(); ++f) dst[f] = base[f] + static_cast<size_t>(i) * layouts[f].sample_bytes;
    try {
      assembler_->fill_sample(sample, dst.data());
      if (source != nullptr) {
        const int64_t c = components[static_cast<size_t>(i)];
        source[i] = c;
        reinterpret_cast<int64_t*>(dst[static_cast<size_t>(series_slot_)])[0] -= mix_->spec().first_series[static_cast<size_t>(c)];
      }
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

void WindowBlocks::samples_of(int64_t first, int64_t n, int64_t* sample, int64_t* component) const {
  const int64_t B = order_.batch_size;
  if (mix_) {  // the stream runs on across epochs; rank r reads the mixture's positions r, r + world, ...
    const int64_t q = run_.epoch * order_.steps_per_epoch * B + first;
    mix_->items(mix_->position_of(q, order_), order_.world_size, n, sample, component);
    return;
  }
  std::optional<PassOrder> order;
  uint64_t order_pass = 0;
  for (int64_t i = 0; i < n; ++i) {
    const StreamPosition at = locate_sample(order_, run_.epoch, first + i, per_pass_, first_pass_);
    if (!order || order_pass != at.pass) {
      order.emplace(order_, units_, at.pass);
      order_pass = at.pass;
    }
    sample[i] = order->sample_at(at.index);
    component[i] = 0;
  }
}

}  // namespace fastfeed
