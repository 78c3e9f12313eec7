#include "sequence_blocks.hpp"

#include <algorithm>
#include <cstring>

#include "errors.hpp"
#include "finite.hpp"

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

}  // namespace

SequenceBlocks::SequenceBlocks(std::shared_ptr<const SequenceData> data, PlanSpec plan, PadSpec pad,
                               SequenceOutput out, int64_t rank, int64_t world, RunSpec run, size_t max_idle,
                               bool pinned)
    : data_(std::move(data)), plan_spec_(plan), pad_(pad), out_(std::move(out)), run_(run) {
  if (data_->count() == 0) throw ArgumentError("no sequences to read from");
  if (plan_spec_.batch_size < 1 || (plan_spec_.pack && plan_spec_.max_len < 1) || world < 1 || rank < 0 ||
      rank >= world || run_.first_batch < 0 || run_.end_batch < run_.first_batch) {
    throw ArgumentError("invalid sequence run");
  }
  plan_spec_.rank = rank;  // every pass's plan holds this rank's share
  plan_spec_.world = world;
  lengths_.reserve(static_cast<size_t>(data_->count()));
  for (int64_t v = 0; v < data_->count(); ++v) lengths_.push_back(data_->inputs[data_->real(v)].length);
  const std::shared_ptr<const PassPlan> first = plan_for(0);
  per_rank_ = first->num_batches();  // the same for every pass
  // Bucketed batches stay whole (cutting the stream anew would mix two sorted batches).
  streamed_ = run_.steps_per_epoch > 0 && !plan_spec_.bucket;
  // The stream runs through the rank's whole share, as windows do: its batches are all full,
  // so drop_last has no short batch to drop there, and dropping items would lose them.
  items_per_pass_ = plan_spec_.pack ? first->num_rows() : static_cast<int64_t>(first->seqs().size());
  if (streamed_ ? items_per_pass_ == 0 : per_rank_ == 0) {
    throw ArgumentError("a pass holds no batch for this rank");
  }
  x_pad_row_ = constant_row(pad_.pad_value, data_->inputs[0].row_elems, out_.x_dtype);
  if (!data_->step_targets.empty()) {
    y_pad_row_ = constant_row(pad_.pad_value, data_->step_targets[0].row_elems, out_.y_dtype);
  }
  pool_ = BufferPool::create(max_idle * 6, pinned);  // a batch takes up to six buffers
}

std::shared_ptr<const PassPlan> SequenceBlocks::plan_for(uint64_t pass) const {
  std::lock_guard<std::mutex> lk(plans_mu_);
  auto it = plans_.find(pass);
  if (it != plans_.end()) return it->second;
  // Workers build the plan under the lock: the others need it too, and it takes milliseconds.
  auto plan = std::make_shared<const PassPlan>(PassPlan::build(lengths_, plan_spec_, pass));
  if (plans_.size() >= 3) plans_.erase(plans_.begin());  // a run moves forward through passes
  plans_.emplace(pass, plan);
  return plan;
}

Array SequenceBlocks::make_array(BufferPool& pool, DType dtype, std::vector<int64_t> shape) const {
  Array a;
  a.dtype = dtype;
  a.data = pool.acquire(static_cast<size_t>(product(shape)) * itemsize(dtype));
  a.shape = std::move(shape);
  return a;
}

void SequenceBlocks::copy_steps(const Series& s, int64_t seq, int64_t start, int64_t count, std::byte* dst,
                                DType dtype, const Normalization& norm, const char* what) const {
  if (count <= 0) return;
  if (out_.check_finite) require_finite(s, "sequence", seq, start, count, 1, what);
  convert_rows(s.row(start), s.dtype, s.row_bytes(), count, s.row_elems, dst, dtype, norm);
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
    if (out_.pieces_only) {
      fill_pieces(layout, b);
    } else {
      fill(layout, b);
    }
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

BatchLayout SequenceBlocks::layout_of(int64_t batch) const {
  const int64_t B = plan_spec_.batch_size;
  if (!streamed_) {
    const StreamPosition at = locate_in_stream(run_, batch, run_.steps_per_epoch, per_rank_);
    const std::shared_ptr<const PassPlan> plan = plan_for(at.pass);
    if (!plan_spec_.pack) {
      const int64_t first = plan->batch_start(at.index);
      return padded_layout(plan->seqs().data() + first, plan->batch_start(at.index + 1) - first);
    }
    std::vector<std::pair<const PassPlan*, int64_t>> rows;
    for (int64_t r = at.index * B; r < std::min((at.index + 1) * B, plan->num_rows()); ++r) {
      rows.emplace_back(plan.get(), plan->pass_row(r));
    }
    return packed_layout(rows);
  }
  // Virtual epochs: items batch * B ... of the stream, every batch full, passes back to back.
  std::vector<std::shared_ptr<const PassPlan>> plans;  // keeps the plans alive while in use
  uint64_t pass = 0;
  std::vector<int64_t> seqs;
  std::vector<std::pair<const PassPlan*, int64_t>> rows;
  for (int64_t i = 0; i < B; ++i) {
    const StreamPosition at = locate_in_stream(run_, batch * B + i, run_.steps_per_epoch * B, items_per_pass_);
    if (plans.empty() || at.pass != pass) plans.push_back(plan_for(pass = at.pass));
    const PassPlan& plan = *plans.back();
    if (plan_spec_.pack) rows.emplace_back(&plan, plan.pass_row(at.index));
    else seqs.push_back(plan.seqs()[static_cast<size_t>(at.index)]);
  }
  return plan_spec_.pack ? packed_layout(rows) : padded_layout(seqs.data(), B);
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
  out.length = plan_spec_.max_len;
  out.rows = static_cast<int64_t>(rows.size());
  out.cu_seqlens.push_back(0);
  for (int64_t r = 0; r < out.rows; ++r) {
    const PassPlan& plan = *rows[static_cast<size_t>(r)].first;
    const int64_t total = plan.total_steps();
    int64_t pos = rows[static_cast<size_t>(r)].second * out.length;
    const int64_t end = std::min(pos + out.length, total);
    int64_t col = 0;
    int64_t segment = 0;
    for (int64_t i = plan.piece_at(pos); pos < end; ++i) {
      const int64_t take = std::min(plan.steps_before(i + 1), end) - pos;
      if (take <= 0) continue;  // an empty sequence
      out.pieces.push_back({r, col, data_->real(plan.seqs()[i]), pos - plan.steps_before(i), take, ++segment});
      out.cu_seqlens.push_back(out.cu_seqlens.back() + static_cast<int32_t>(take));
      pos += take;
      col += take;
    }
    out.row_lengths.push_back(col);
  }
  return out;
}

void SequenceBlocks::fill(const BatchLayout& layout, Block& b) const {
  const int64_t rows = layout.rows, L = layout.length;
  BufferPool& pool = *pool_;
  Array& x = b[Output::X] = make_array(pool, out_.x_dtype, shape_of({rows, L}, out_.x_feat));
  Array& mask = b[Output::Mask] = make_array(pool, DType::Bool, {rows, L});
  const bool steps = !data_->step_targets.empty();
  if (steps) b[Output::Y] = make_array(pool, out_.y_dtype, shape_of({rows, L}, out_.y_feat));
  const size_t x_step = x_pad_row_.size();
  const size_t y_step = y_pad_row_.size();
  fill_padding(x.data.get(), rows * L, x_pad_row_);
  if (steps) fill_padding(b[Output::Y].data.get(), rows * L, y_pad_row_);
  auto* mask_p = reinterpret_cast<bool*>(mask.data.get());
  std::fill(mask_p, mask_p + rows * L, false);
  int32_t* seg_p = nullptr;
  int64_t* pos_p = nullptr;
  if (plan_spec_.pack) {
    Array& segments = b[Output::SegmentIds] = make_array(pool, DType::Int32, {rows, L});
    Array& positions = b[Output::PositionIds] = make_array(pool, DType::Int64, {rows, L});
    seg_p = reinterpret_cast<int32_t*>(segments.data.get());
    pos_p = reinterpret_cast<int64_t*>(positions.data.get());
    std::fill(seg_p, seg_p + rows * L, 0);
    std::fill(pos_p, pos_p + rows * L, 0);
  }
  for (const Piece& p : layout.pieces) {
    b.failed_at = p.row;  // until the row is complete
    const int64_t at = p.row * L + p.col;
    copy_steps(data_->inputs[p.seq], p.seq, p.first, p.count, x.data.get() + static_cast<size_t>(at) * x_step,
               out_.x_dtype, out_.x_norm, "the inputs");
    if (steps) {
      copy_steps(data_->step_targets[p.seq], p.seq, p.first, p.count,
                 b[Output::Y].data.get() + static_cast<size_t>(at) * y_step, out_.y_dtype, Normalization{},
                 "the targets");
    }
    std::fill(mask_p + at, mask_p + at + p.count, true);
    if (seg_p != nullptr) {
      std::fill(seg_p + at, seg_p + at + p.count, static_cast<int32_t>(p.segment));
      for (int64_t t = 0; t < p.count; ++t) pos_p[at + t] = t;
    }
  }
  fill_row_info(layout, b);
  b.failed_at = -1;
}

void SequenceBlocks::fill_pieces(const BatchLayout& layout, Block& b) const {
  const auto n = static_cast<int64_t>(layout.pieces.size());
  Array& x = b[Output::X] = make_array(*pool_, DType::Int64, {n, 6});
  static_assert(sizeof(Piece) == 6 * sizeof(int64_t), "a piece is six int64");
  if (n > 0) std::memcpy(x.data.get(), layout.pieces.data(), static_cast<size_t>(n) * sizeof(Piece));
  fill_row_info(layout, b);
  b.failed_at = -1;
}

// Lengths, labels and cu_seqlens: the parts of a batch that are the same on host and GPU.
void SequenceBlocks::fill_row_info(const BatchLayout& layout, Block& b) const {
  BufferPool& pool = *pool_;
  Array& lengths = b[Output::Lengths] = make_array(pool, DType::Int64, {layout.rows});
  std::copy(layout.row_lengths.begin(), layout.row_lengths.end(), reinterpret_cast<int64_t*>(lengths.data.get()));
  if (plan_spec_.pack) {
    Array& cu = b[Output::CuSeqlens] = make_array(pool, DType::Int32, {static_cast<int64_t>(layout.cu_seqlens.size())});
    std::copy(layout.cu_seqlens.begin(), layout.cu_seqlens.end(), reinterpret_cast<int32_t*>(cu.data.get()));
  }
  if (!data_->has_labels()) return;
  const Series& labels = data_->labels;
  Array& y = b[Output::Y] = make_array(pool, out_.y_dtype, shape_of({layout.rows}, out_.y_feat));
  const size_t bytes = static_cast<size_t>(labels.row_elems) * itemsize(out_.y_dtype);
  for (const Piece& p : layout.pieces) {  // padded batches: one piece per row
    b.failed_at = p.row;
    if (out_.check_finite) require_finite_label(labels, p.seq);
    convert_rows(labels.row(p.seq), labels.dtype, labels.row_bytes(), 1, labels.row_elems,
                 y.data.get() + static_cast<size_t>(p.row) * bytes, out_.y_dtype, Normalization{});
  }
}

}  // namespace fastfeed
