#include "sequences/sequence_blocks.hpp"

#include <algorithm>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "common/errors.hpp"
#include "pipeline/fields.hpp"
#include "source/finite.hpp"

namespace fastfeed {

namespace {

int64_t product(const std::vector<int64_t>& v) {
  int64_t p = 1;
  for (int64_t d : v) p *= d;
  return p;
}

// One step of `row_elems` elements, all `value` converted to `dtype` (as NumPy would).
std::vector<std::byte> constant_row(double value, int64_t row_elems, DType dtype) {
  std::vector<double> src(static_cast<size_t>(row_elems), value);
  std::vector<std::byte> row(static_cast<size_t>(row_elems) * itemsize(dtype));
  convert_rows(reinterpret_cast<const std::byte*>(src.data()), DType::Float64, src.size() * sizeof(double), 1,
               row_elems, row.data(), dtype, Normalization{});
  return row;
}

// The pool keeps this many idle buffers per batch it must cover (idle_buffers()). A batch takes
// x, y or labels, mask, lengths, observed and y_observed, and either the two id arrays and
// cu_seqlens (packed) or static, series, start and a mixture's source (padded): ten at most.
constexpr size_t kBuffersPerBatch = 10;

}  // namespace

SequenceBlocks::SequenceBlocks(std::shared_ptr<const SequenceData> data, const OrderSpec& order, const PackSpec& pack,
                               const PadSpec& pad, OutputSpec out, const RunSpec& run, std::shared_ptr<const MixOrder> mix,
                               std::shared_ptr<const PassSizes> passes)
    : data_(std::move(data)),
      mix_(std::move(mix)),
      order_(order),
      pack_(pack),
      pad_(pad),
      out_(std::move(out)),
      run_(run),
      passes_(std::move(passes)) {
  if (mix_ && (order.steps_per_epoch <= 0 || pack.pack || pack.bucket || pack.batch_tokens > 0)) {
    throw ArgumentError("a mixture of sequences needs virtual epochs (steps_per_epoch) and padded batches");
  }
  if (data_->count() == 0) throw ArgumentError("no sequences to read from");
  pack_.validate();
  pad_.validate(pack_.pack);
  run_.validate();
  units_ = data_->units(pack_.pack, pad_.max_len);
  sizes_ = epoch_sizes(units_, order_, run_.epoch);  // validates the order; an elastic resume's epoch is shorter
  lengths_ = data_->lengths();
  if (pack_.varying()) {
    // Batches (and rows) differ from pass to pass: this epoch's count comes from its plan, and
    // virtual epochs find their batches by the counts of the passes before.
    if (!passes_) passes_ = std::make_shared<const PassSizes>(lengths_, order_, pack_, pad_);
    // (With virtual epochs, a whole pass's: the first, or the one after an elastic resume's.)
    const uint64_t pass = order_.steps_per_epoch > 0 ? (order_.resume_step >= 0 ? static_cast<uint64_t>(order_.resume_pass) + 1 : 0)
                                                     : static_cast<uint64_t>(run_.epoch);
    sizes_.per_rank = passes_->items(pass);
    sizes_.batches_per_pass = passes_->batches(pass);
    sizes_.batches_per_epoch = order_.steps_per_epoch > 0 ? order_.steps_per_epoch : sizes_.batches_per_pass;
  }
  if (run_.first_batch > sizes_.batches_per_epoch) {
    throw ArgumentError("RunSpec.first_batch must be <= the epoch's " + std::to_string(sizes_.batches_per_epoch) +
                        " batches, got " + std::to_string(run_.first_batch));
  }
  check_feat(out_.x_feat, data_->inputs[0].row_elems, "OutputSpec.x_feat", "a step of the inputs");
  if (!data_->step_targets.empty()) {
    check_feat(out_.y_feat, data_->step_targets[0].row_elems, "OutputSpec.y_feat", "a step of the targets");
  } else if (data_->has_labels()) {
    check_feat(out_.y_feat, data_->labels.row_elems, "OutputSpec.y_feat", "a label");
  }
  // The plan of the epoch's pass, or with virtual epochs of a whole pass (the first, or the one
  // after an elastic resume's).
  const uint64_t whole_pass = order_.resume_step >= 0 ? static_cast<uint64_t>(order_.resume_pass) + 1 : 0;
  const std::shared_ptr<const PassPlan> first =
      plan_for(order_.steps_per_epoch <= 0 ? static_cast<uint64_t>(run_.epoch) : whole_pass);
  // The plan cuts each pass itself; its count must be the one epoch_sizes() reports to Python.
  if (first->num_batches() != sizes_.batches_per_pass) {
    throw std::logic_error("sequence plan holds " + std::to_string(first->num_batches()) +
                           " batches a pass, epoch_sizes says " + std::to_string(sizes_.batches_per_pass));
  }
  // Bucketed and token-budget batches stay whole (cutting the stream anew would mix two sorted
  // batches, or break the budget).
  streamed_ = order_.steps_per_epoch > 0 && !pack_.bucket && pack_.batch_tokens == 0;
  // The stream runs through the rank's whole share, as windows do: its batches are all full,
  // so drop_last has no short batch to drop there, and dropping items would lose them.
  items_per_pass_ = pack_.pack ? first->num_rows() : static_cast<int64_t>(first->seqs().size());
  // (Best-fit rows stream through equal shares, which PassSizes counts.)
  if (streamed_ && !pack_.varying() && items_per_pass_ != sizes_.per_rank) {
    throw std::logic_error("sequence plan holds " + std::to_string(items_per_pass_) + " items a pass, epoch_sizes says " +
                           std::to_string(sizes_.per_rank));
  }
  // Padded sequences stream as windows do: every rank through an equal share of each pass (the
  // n % world_size left over sit it out), so that all ranks cross into the next pass together
  // and a saved state names one point of the stream for them all (an elastic resume).
  // Back-to-back packed rows too: a pass's rows are cut from its order alone.
  equal_shares_ = streamed_ && !pack_.varying() && !mix_;
  if (equal_shares_) {
    const auto resumed = static_cast<uint64_t>(order_.resume_pass);
    first_pass_ = stream_share_size(order_, units_, resumed);
    per_pass_ = stream_share_size(order_, units_, resumed + 1);
  } else {
    first_pass_ = per_pass_ = items_per_pass_;
  }
  // (A real epoch resumed elastically may have no batch left: it is what its pass has left.)
  const bool resumed_epoch = order_.steps_per_epoch <= 0 && order_.resume_step == run_.epoch;
  if (!mix_ && (streamed_ ? per_pass_ == 0 : sizes_.batches_per_pass == 0 && !resumed_epoch)) {  // a mixture streams on
    throw ArgumentError(equal_shares_ ? std::string("a pass holds fewer ") + (pack_.pack ? "rows" : "sequences") +
                                            " than world_size: no rank can stream through it"
                                      : "a pass holds no batch for this rank");
  }
  x_pad_row_ = constant_row(pad_.pad_value, data_->inputs[0].row_elems, out_.x_dtype);
  if (!data_->step_targets.empty()) {
    y_pad_row_ = constant_row(pad_.pad_value, data_->step_targets[0].row_elems, out_.y_dtype);
  }
  pool_ = BufferPool::create(idle_buffers(run_.ring_slots(), run_.pinned) * kBuffersPerBatch, run_.pinned);
}

std::shared_ptr<const PassPlan> SequenceBlocks::plan_for(uint64_t pass) const {
  std::lock_guard<std::mutex> lk(plans_mu_);
  auto it = plans_.find(pass);
  if (it != plans_.end()) return it->second;
  // Workers build the plan under the lock: the others need it too, and it takes milliseconds.
  auto plan = std::make_shared<const PassPlan>(PassPlan::build(lengths_, order_, pack_, pad_, pass));
  if (plans_.size() >= 3) plans_.erase(plans_.begin());  // a run moves forward through passes
  plans_.emplace(pass, plan);
  return plan;
}

std::byte* SequenceBlocks::add(Block& b, std::string_view name, DType dtype, std::vector<int64_t> shape,
                               bool per_row) const {
  Array& a = b.set(name);
  a.dtype = dtype;
  a.per_row = per_row;
  a.data = pool_->acquire(static_cast<size_t>(product(shape)) * itemsize(dtype));
  a.shape = std::move(shape);
  return a.data.get();
}

void SequenceBlocks::copy_steps(const Series& s, int64_t seq, int64_t start, int64_t count, std::byte* dst,
                                DType dtype, const Normalization& norm, const char* what, bool* observed) const {
  if (count <= 0) return;
  if (out_.check_finite) require_finite(s, "sequence", seq, start, count, 1, what);
  convert_rows(s.row(start), s.dtype, s.row_bytes(), count, s.row_elems, dst, dtype, norm);
  if (out_.mask_non_finite) mask_non_finite(s, start, count, 1, dst, dtype, observed);
}

void SequenceBlocks::fill_padding(std::byte* dst, int64_t steps, const std::vector<std::byte>& pad_row) const {
  const size_t n = pad_row.size();
  if (std::all_of(pad_row.begin(), pad_row.end(), [](std::byte c) { return c == std::byte{0}; })) {
    std::memset(dst, 0, n * static_cast<size_t>(steps));
    return;
  }
  for (int64_t t = 0; t < steps; ++t) std::memcpy(dst + static_cast<size_t>(t) * n, pad_row.data(), n);
}

Block SequenceBlocks::build(int64_t k) const {
  Block b;
  b.first_batch = run_.first_batch + k;
  b.num_batches = 1;
  int64_t first_sequence = -1;  // named if a file change spoils the batch
  try {
    const BatchLayout layout = layout_of(b.first_batch);
    if (!layout.pieces.empty()) first_sequence = layout.pieces.front().seq;
    b.num_samples = layout.rows;
    if (run_.indices_only) {
      fill_pieces(layout, b);
    } else {
      fill(layout, b);
    }
  } catch (const std::bad_alloc&) {
    b.error = "out of memory for the batch's buffers (std::bad_alloc): use smaller batches or a lower prefetch";
    if (b.failed_at < 0) b.failed_at = 0;
  } catch (const std::exception& e) {
    b.error = e.what();
    if (b.failed_at < 0) b.failed_at = 0;
  }
  const std::string changed = data_->watch.problem();
  if (!changed.empty()) {  // a shrunk file reads as zeros: none of the batch can be trusted
    b.failed_at = 0;
    std::string which;
    if (first_sequence >= 0) which = "sequence " + std::to_string(first_sequence) + " and the rest of its batch: ";
    b.error = which + "the source file changed while the epoch ran: " + changed;
  }
  return b;
}

BatchLayout SequenceBlocks::mixed_layout(int64_t batch) const {
  const int64_t B = order_.batch_size;
  std::vector<int64_t> seqs(static_cast<size_t>(B)), components(seqs.size());
  // The stream runs on across epochs; rank r reads the mixture's positions r, r + world, ...
  const int64_t q = (run_.epoch * order_.steps_per_epoch + batch) * B;
  mix_->items(mix_->position_of(q, order_), order_.world_size, B, seqs.data(), components.data());
  BatchLayout out = padded_layout(seqs.data(), B);
  out.components = std::move(components);
  return out;
}

BatchLayout SequenceBlocks::layout_of(int64_t batch) const {
  if (mix_) return mixed_layout(batch);
  const int64_t B = order_.batch_size;
  // Virtual epochs resumed elastically count the stream of varying passes from the resume's step.
  const int64_t resumed_at = order_.resume_step >= 0 ? order_.resume_step : 0;
  if (!streamed_) {
    const StreamPosition at =
        !pack_.varying() ? locate_batch(order_, run_.epoch, batch, units_)
        : order_.steps_per_epoch > 0 ? passes_->locate(run_.epoch * order_.steps_per_epoch + batch - resumed_at, /*by_items=*/false)
                                     : StreamPosition{static_cast<uint64_t>(run_.epoch), batch};
    const std::shared_ptr<const PassPlan> plan = plan_for(at.pass);
    if (!pack_.pack) {
      const int64_t first = plan->batch_start(at.index);
      return padded_layout(plan->seqs().data() + first, plan->batch_start(at.index + 1) - first);
    }
    std::vector<std::pair<const PassPlan*, int64_t>> rows;
    for (int64_t r = at.index * B; r < std::min((at.index + 1) * B, plan->num_rows()); ++r) rows.emplace_back(plan.get(), r);
    return packed_layout(rows);
  }
  // Virtual epochs: items batch * B ... of the stream, every batch full, passes back to back.
  std::vector<std::shared_ptr<const PassPlan>> plans;  // keeps the plans alive while in use
  uint64_t pass = 0;
  std::vector<int64_t> seqs;
  std::vector<std::pair<const PassPlan*, int64_t>> rows;
  for (int64_t i = 0; i < B; ++i) {
    const int64_t item = batch * B + i;
    const StreamPosition at =
        pack_.varying() ? passes_->locate((run_.epoch * order_.steps_per_epoch - resumed_at) * B + item, /*by_items=*/true)
                        : locate_sample(order_, run_.epoch, item, per_pass_, first_pass_);
    if (plans.empty() || at.pass != pass) plans.push_back(plan_for(pass = at.pass));
    const PassPlan& plan = *plans.back();
    if (pack_.pack) rows.emplace_back(&plan, at.index);
    else seqs.push_back(plan.seqs()[static_cast<size_t>(at.index)]);
  }
  return pack_.pack ? packed_layout(rows) : padded_layout(seqs.data(), B);
}

BatchLayout SequenceBlocks::padded_layout(const int64_t* seqs, int64_t count) const {
  BatchLayout out;
  out.rows = count;
  int64_t longest = 0;
  for (int64_t i = 0; i < out.rows; ++i) {
    const int64_t len = lengths_[seqs[i]];
    out.row_lengths.push_back(pad_.max_len > 0 ? std::min(len, pad_.max_len) : len);
    longest = std::max(longest, out.row_lengths.back());
  }
  out.length = pad_.max_len > 0 ? pad_.max_len
                                : (longest + pad_.pad_multiple - 1) / pad_.pad_multiple * pad_.pad_multiple;
  for (int64_t i = 0; i < out.rows; ++i) {
    const int64_t n = out.row_lengths[i];
    const int64_t src = pad_.truncate_left ? lengths_[seqs[i]] - n : 0;
    const int64_t col = pad_.pad_left ? out.length - n : 0;
    out.pieces.push_back({i, col, data_->real(seqs[i]), src, n, 1});
  }
  return out;
}

BatchLayout SequenceBlocks::packed_layout(const std::vector<std::pair<const PassPlan*, int64_t>>& rows) const {
  BatchLayout out;
  out.length = pad_.max_len;
  out.rows = static_cast<int64_t>(rows.size());
  out.cu_seqlens.push_back(0);
  std::vector<PlanPiece> pieces;
  for (int64_t r = 0; r < out.rows; ++r) {
    rows[static_cast<size_t>(r)].first->row_pieces(rows[static_cast<size_t>(r)].second, pieces);
    int64_t col = 0;
    int64_t segment = 0;
    for (const PlanPiece& p : pieces) {
      out.pieces.push_back({r, col, data_->real(p.seq), p.first, p.count, ++segment});
      out.cu_seqlens.push_back(out.cu_seqlens.back() + static_cast<int32_t>(p.count));
      col += p.count;
    }
    out.row_lengths.push_back(col);
  }
  return out;
}

void SequenceBlocks::fill(const BatchLayout& layout, Block& b) const {
  const int64_t rows = layout.rows, L = layout.length;
  const bool steps = !data_->step_targets.empty();
  // Every field is set before a step is copied: the names are looked up once per batch, the
  // loop below writes through plain pointers. Mask and lengths come with every batch, padded
  // or not.
  b.fields.reserve(12);
  std::byte* x = add(b, field::kX, out_.x_dtype, shape_of({rows, L}, out_.x_feat));
  std::byte* y = steps ? add(b, field::kY, out_.y_dtype, shape_of({rows, L}, out_.y_feat)) : nullptr;
  std::byte* labels = add_labels(layout, b);
  auto* mask = reinterpret_cast<bool*>(add(b, field::kMask, DType::Bool, {rows, L}));
  // check_finite="mask": which values were finite (padding was none).
  bool* observed = nullptr;
  bool* y_observed = nullptr;
  if (out_.mask_non_finite) {
    observed = reinterpret_cast<bool*>(add(b, field::kObserved, DType::Bool, shape_of({rows, L}, out_.x_feat)));
    std::fill(observed, observed + rows * L * product(out_.x_feat), false);
    if (steps) {
      y_observed = reinterpret_cast<bool*>(add(b, field::kYObserved, DType::Bool, shape_of({rows, L}, out_.y_feat)));
      std::fill(y_observed, y_observed + rows * L * product(out_.y_feat), false);
    }
  }
  int32_t* seg = nullptr;
  int64_t* pos = nullptr;
  if (pack_.pack) {
    seg = reinterpret_cast<int32_t*>(add(b, field::kSegmentIds, DType::Int32, {rows, L}));
    pos = reinterpret_cast<int64_t*>(add(b, field::kPositionIds, DType::Int64, {rows, L}));
    std::fill(seg, seg + rows * L, 0);
    std::fill(pos, pos + rows * L, 0);
  }
  add_row_info(layout, b);
  const size_t x_step = x_pad_row_.size();
  const size_t y_step = y_pad_row_.size();
  fill_padding(x, rows * L, x_pad_row_);
  if (steps) fill_padding(y, rows * L, y_pad_row_);
  std::fill(mask, mask + rows * L, false);
  for (const Piece& p : layout.pieces) {
    b.failed_at = p.row;  // until the row is complete
    const int64_t at = p.row * L + p.col;
    copy_steps(data_->inputs[p.seq], p.seq, p.first, p.count, x + static_cast<size_t>(at) * x_step, out_.x_dtype,
               out_.x_norm, "the inputs", observed ? observed + at * product(out_.x_feat) : nullptr);
    if (steps) {
      copy_steps(data_->step_targets[p.seq], p.seq, p.first, p.count, y + static_cast<size_t>(at) * y_step,
                 out_.y_dtype, Normalization{}, "the targets", y_observed ? y_observed + at * product(out_.y_feat) : nullptr);
    }
    std::fill(mask + at, mask + at + p.count, true);
    if (seg != nullptr) {
      std::fill(seg + at, seg + at + p.count, static_cast<int32_t>(p.segment));
      for (int64_t t = 0; t < p.count; ++t) pos[at + t] = t;
    }
  }
  if (labels != nullptr) fill_labels(layout, labels, b);
  add_row_fields(layout, b);
  b.failed_at = -1;
}

void SequenceBlocks::fill_pieces(const BatchLayout& layout, Block& b) const {
  const auto n = static_cast<int64_t>(layout.pieces.size());
  b.fields.reserve(7);
  // A table, not rows of the batch: a packed row holds several pieces.
  std::byte* pieces = add(b, field::kPieces, DType::Int64, {n, 6}, /*per_row=*/false);
  static_assert(sizeof(Piece) == 6 * sizeof(int64_t), "a piece is six int64");
  if (n > 0) std::memcpy(pieces, layout.pieces.data(), static_cast<size_t>(n) * sizeof(Piece));
  std::byte* labels = add_labels(layout, b);
  add_row_info(layout, b);
  if (labels != nullptr) fill_labels(layout, labels, b);
  add_row_fields(layout, b);
  b.failed_at = -1;
}

void SequenceBlocks::add_row_info(const BatchLayout& layout, Block& b) const {
  auto* lengths = reinterpret_cast<int64_t*>(add(b, field::kLengths, DType::Int64, {layout.rows}));
  std::copy(layout.row_lengths.begin(), layout.row_lengths.end(), lengths);
  if (pack_.pack) {
    const auto n = static_cast<int64_t>(layout.cu_seqlens.size());
    auto* cu = reinterpret_cast<int32_t*>(add(b, field::kCuSeqlens, DType::Int32, {n}, /*per_row=*/false));
    std::copy(layout.cu_seqlens.begin(), layout.cu_seqlens.end(), cu);
  }
}

void SequenceBlocks::add_row_fields(const BatchLayout& layout, Block& b) const {
  // Python refuses these with packing, where a row holds several sequences: one piece per row here.
  if (data_->has_statics()) {
    const Series& rows = data_->statics;
    const FieldOutput& out = out_.static_out;
    std::byte* dst = add(b, field::kStatic, out.dtype, shape_of({layout.rows}, out.feat));
    const size_t bytes = static_cast<size_t>(rows.row_elems) * itemsize(out.dtype);
    for (const Piece& p : layout.pieces) {
      b.failed_at = p.row;
      if (out_.check_finite) require_finite_row(rows, p.seq, "the static features of sequence");
      std::byte* row = dst + static_cast<size_t>(p.row) * bytes;
      convert_rows(rows.row(p.seq), rows.dtype, rows.row_bytes(), 1, rows.row_elems, row, out.dtype, out.norm);
      if (out_.mask_non_finite) mask_non_finite(rows, p.seq, 1, 1, row, out.dtype, nullptr);
    }
  }
  if (out_.with_index) {
    auto* series = reinterpret_cast<int64_t*>(add(b, field::kSeries, DType::Int64, {layout.rows}));
    auto* start = reinterpret_cast<int64_t*>(add(b, field::kStart, DType::Int64, {layout.rows}));
    for (const Piece& p : layout.pieces) {
      series[p.row] = p.seq;
      start[p.row] = 0;  // a whole sequence starts at its first step
    }
    if (mix_) {  // numbered within its component, which "source" names
      auto* source = reinterpret_cast<int64_t*>(add(b, field::kSource, DType::Int64, {layout.rows}));
      for (const Piece& p : layout.pieces) {
        const int64_t c = layout.components[static_cast<size_t>(p.row)];
        source[p.row] = c;
        series[p.row] -= mix_->spec().first_series[static_cast<size_t>(c)];
      }
    }
  }
}

std::byte* SequenceBlocks::add_labels(const BatchLayout& layout, Block& b) const {
  if (!data_->has_labels()) return nullptr;
  return add(b, field::kY, out_.y_dtype, shape_of({layout.rows}, out_.y_feat));
}

void SequenceBlocks::fill_labels(const BatchLayout& layout, std::byte* dst, Block& b) const {
  bool* y_observed = out_.mask_non_finite ? reinterpret_cast<bool*>(add(b, field::kYObserved, DType::Bool,
                                                                        shape_of({layout.rows}, out_.y_feat)))
                                          : nullptr;
  const Series& labels = data_->labels;
  const size_t bytes = static_cast<size_t>(labels.row_elems) * itemsize(out_.y_dtype);
  for (const Piece& p : layout.pieces) {  // padded batches: one piece per row
    b.failed_at = p.row;
    if (out_.check_finite) require_finite_label(labels, p.seq);
    std::byte* row = dst + static_cast<size_t>(p.row) * bytes;
    convert_rows(labels.row(p.seq), labels.dtype, labels.row_bytes(), 1, labels.row_elems, row, out_.y_dtype,
                 Normalization{});
    if (y_observed) mask_non_finite(labels, p.seq, 1, 1, row, out_.y_dtype, y_observed + p.row * labels.row_elems);
  }
}

}  // namespace fastfeed
