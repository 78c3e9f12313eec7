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
    : data_(std::move(data)), plan_spec_(plan), pad_(pad), out_(std::move(out)), rank_(rank), world_(world), run_(run) {
  if (data_->count() == 0) throw ArgumentError("no sequences to read from");
  if (plan_spec_.batch_size < 1 || (plan_spec_.pack && plan_spec_.max_len < 1) || world_ < 1 || rank_ < 0 ||
      rank_ >= world_ || run_.first_batch < 0 || run_.end_batch < run_.first_batch) {
    throw ArgumentError("invalid sequence run");
  }
  lengths_.reserve(static_cast<size_t>(data_->count()));
  for (int64_t v = 0; v < data_->count(); ++v) lengths_.push_back(data_->inputs[data_->real(v)].length);
  per_pass_ = plan_for(0)->num_batches();  // the same for every pass
  per_rank_ = plan_spec_.drop_last ? per_pass_ / world_ : (per_pass_ + world_ - 1) / world_;
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
  const StreamPosition at = locate_in_stream(run_, b.first_batch, run_.steps_per_epoch, per_rank_);
  int64_t g = at.index * world_ + rank_;
  if (g >= per_pass_) g %= per_pass_;  // padding: this rank repeats the pass's first batches
  const std::shared_ptr<const PassPlan> plan = plan_for(at.pass);
  try {
    if (plan_spec_.pack) {
      fill_packed(*plan, g, b);
    } else {
      fill_padded(*plan, g, b);
    }
  } catch (const std::exception& e) {
    b.error = e.what();
    if (b.failed_at < 0) b.failed_at = 0;
  }
  const std::string changed = data_->watch.problem();
  if (!changed.empty()) {  // a shrunk file reads as zeros: none of the batch can be trusted
    b.failed_at = 0;
    b.error = "the source file changed while the epoch ran: " + changed;
  }
  return b;
}

void SequenceBlocks::fill_padded(const PassPlan& plan, int64_t g, Block& b) const {
  const int64_t first = plan.batch_start(g);
  const int64_t rows = plan.batch_start(g + 1) - first;
  const int64_t* seqs = plan.seqs().data() + first;
  std::vector<int64_t> kept(static_cast<size_t>(rows));
  int64_t longest = 0;
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t len = lengths_[seqs[i]];
    kept[i] = pad_.max_len > 0 ? std::min(len, pad_.max_len) : len;
    longest = std::max(longest, kept[i]);
  }
  const int64_t L = pad_.max_len > 0 ? pad_.max_len
                                     : (longest + pad_.pad_multiple - 1) / pad_.pad_multiple * pad_.pad_multiple;
  b.num_samples = rows;
  BufferPool& pool = *pool_;
  Array& x = b[Output::X] = make_array(pool, out_.x_dtype, shape_of({rows, L}, out_.x_feat));
  Array& mask = b[Output::Mask] = make_array(pool, DType::Bool, {rows, L});
  Array& lengths = b[Output::Lengths] = make_array(pool, DType::Int64, {rows});
  const bool steps = !data_->step_targets.empty();
  if (steps) b[Output::Y] = make_array(pool, out_.y_dtype, shape_of({rows, L}, out_.y_feat));
  if (data_->has_labels()) b[Output::Y] = make_array(pool, out_.y_dtype, shape_of({rows}, out_.y_feat));

  const size_t x_step = x_pad_row_.size();
  const size_t y_step = y_pad_row_.size();
  auto* mask_p = reinterpret_cast<bool*>(mask.data.get());
  auto* len_p = reinterpret_cast<int64_t*>(lengths.data.get());
  for (int64_t i = 0; i < rows; ++i) {
    b.failed_at = i;  // until the row is complete
    const int64_t seq = data_->real(seqs[i]);
    const int64_t n = kept[i];
    const int64_t src = pad_.truncate_left ? lengths_[seqs[i]] - n : 0;
    const int64_t col = pad_.pad_left ? L - n : 0;
    std::byte* xrow = x.data.get() + static_cast<size_t>(i * L) * x_step;
    fill_padding(xrow, L, x_pad_row_);
    copy_steps(data_->inputs[seq], seq, src, n, xrow + col * x_step, out_.x_dtype, out_.x_norm, "the inputs");
    if (steps) {
      std::byte* yrow = b[Output::Y].data.get() + static_cast<size_t>(i * L) * y_step;
      fill_padding(yrow, L, y_pad_row_);
      copy_steps(data_->step_targets[seq], seq, src, n, yrow + col * y_step, out_.y_dtype, Normalization{},
                 "the targets");
    } else if (data_->has_labels()) {
      const Series& labels = data_->labels;
      const size_t bytes = static_cast<size_t>(labels.row_elems) * itemsize(out_.y_dtype);
      if (out_.check_finite) require_finite(labels, "sequence", seq, seq, 1, 1, "the label");
      convert_rows(labels.row(seq), labels.dtype, labels.row_bytes(), 1, labels.row_elems,
                   b[Output::Y].data.get() + static_cast<size_t>(i) * bytes, out_.y_dtype, Normalization{});
    }
    std::fill(mask_p + i * L, mask_p + (i + 1) * L, false);
    std::fill(mask_p + i * L + col, mask_p + i * L + col + n, true);
    len_p[i] = n;
  }
  b.failed_at = -1;
}

void SequenceBlocks::fill_packed(const PassPlan& plan, int64_t g, Block& b) const {
  const int64_t B = plan_spec_.batch_size;
  const int64_t L = plan_spec_.max_len;
  const int64_t first_row = g * B;
  const int64_t rows = std::min(first_row + B, plan.num_rows()) - first_row;
  b.num_samples = rows;
  BufferPool& pool = *pool_;
  Array& x = b[Output::X] = make_array(pool, out_.x_dtype, shape_of({rows, L}, out_.x_feat));
  Array& mask = b[Output::Mask] = make_array(pool, DType::Bool, {rows, L});
  Array& lengths = b[Output::Lengths] = make_array(pool, DType::Int64, {rows});
  Array& segments = b[Output::SegmentIds] = make_array(pool, DType::Int32, {rows, L});
  Array& positions = b[Output::PositionIds] = make_array(pool, DType::Int64, {rows, L});
  const bool steps = !data_->step_targets.empty();
  if (steps) b[Output::Y] = make_array(pool, out_.y_dtype, shape_of({rows, L}, out_.y_feat));

  const size_t x_step = x_pad_row_.size();
  const size_t y_step = y_pad_row_.size();
  auto* mask_p = reinterpret_cast<bool*>(mask.data.get());
  auto* len_p = reinterpret_cast<int64_t*>(lengths.data.get());
  auto* seg_p = reinterpret_cast<int32_t*>(segments.data.get());
  auto* pos_p = reinterpret_cast<int64_t*>(positions.data.get());
  std::vector<int32_t> cu{0};
  const int64_t total = plan.total_steps();
  for (int64_t r = 0; r < rows; ++r) {
    b.failed_at = r;
    int64_t pos = (first_row + r) * L;
    const int64_t end = std::min(pos + L, total);
    int64_t col = 0;
    int32_t segment = 0;
    std::byte* xrow = x.data.get() + static_cast<size_t>(r * L) * x_step;
    std::byte* yrow = steps ? b[Output::Y].data.get() + static_cast<size_t>(r * L) * y_step : nullptr;
    for (int64_t i = plan.piece_at(pos); pos < end; ++i) {
      const int64_t seq = data_->real(plan.seqs()[i]);
      const int64_t offset = pos - plan.steps_before(i);
      const int64_t take = std::min(plan.steps_before(i + 1), end) - pos;
      if (take <= 0) continue;  // an empty sequence
      copy_steps(data_->inputs[seq], seq, offset, take, xrow + col * x_step, out_.x_dtype, out_.x_norm, "the inputs");
      if (steps) {
        copy_steps(data_->step_targets[seq], seq, offset, take, yrow + col * y_step, out_.y_dtype, Normalization{},
                   "the targets");
      }
      ++segment;
      for (int64_t t = 0; t < take; ++t) {
        seg_p[r * L + col + t] = segment;
        pos_p[r * L + col + t] = t;
        mask_p[r * L + col + t] = true;
      }
      cu.push_back(cu.back() + static_cast<int32_t>(take));
      pos += take;
      col += take;
    }
    fill_padding(xrow + col * x_step, L - col, x_pad_row_);
    if (steps) fill_padding(yrow + col * y_step, L - col, y_pad_row_);
    std::fill(seg_p + r * L + col, seg_p + (r + 1) * L, 0);
    std::fill(pos_p + r * L + col, pos_p + (r + 1) * L, 0);
    std::fill(mask_p + r * L + col, mask_p + (r + 1) * L, false);
    len_p[r] = col;
  }
  b.failed_at = -1;
  Array& cu_out = b[Output::CuSeqlens] = make_array(pool, DType::Int32, {static_cast<int64_t>(cu.size())});
  std::memcpy(cu_out.data.get(), cu.data(), cu.size() * sizeof(int32_t));
}

}  // namespace fastfeed
