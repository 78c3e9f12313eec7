#include "sequences/sequence_plan.hpp"

#include <algorithm>
#include <limits>
#include <set>
#include <string>
#include <utility>

#include "order/order.hpp"
#include "order/permutation.hpp"

namespace fastfeed {

namespace {

constexpr int64_t kMaxInt64 = std::numeric_limits<int64_t>::max();

std::vector<int64_t> pass_order(int64_t n, const OrderSpec& spec, uint64_t pass) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  const Permutation perm(static_cast<uint64_t>(n), spec.seed, pass);
  for (int64_t q = 0; q < n; ++q) {
    order[static_cast<size_t>(q)] = spec.shuffle ? static_cast<int64_t>(perm(static_cast<uint64_t>(q))) : q;
  }
  return order;
}

// a * b, or the largest int64 where that overflows (a, b >= 0).
int64_t saturating_product(int64_t a, int64_t b) { return (b != 0 && a > kMaxInt64 / b) ? kMaxInt64 : a * b; }

// Sorts each pool of `pool` consecutive sequences by length (stable: ties keep their order).
void sort_pools(std::vector<int64_t>& seqs, const std::vector<int64_t>& lengths, int64_t pool) {
  const auto by_length = [&](int64_t a, int64_t b) { return lengths[a] < lengths[b]; };
  for (size_t s = 0; s < seqs.size(); s += static_cast<size_t>(pool)) {
    const size_t e = std::min(seqs.size(), s + static_cast<size_t>(pool));
    std::stable_sort(seqs.begin() + s, seqs.begin() + e, by_length);
  }
}

// One rank's bucketed batches of a pass: its share, sorted by length in pools of `pool`
// sequences, cut into batches of B (a short last one dropped with drop_last), the batches then
// shuffled (keyed by the pass) whatever shuffle says: bucketing promises shuffled batches, or
// every pool would run from its shortest batch to its longest. Batch g holds
// seqs[starts[g] .. starts[g + 1]).
struct BucketBatches {
  std::vector<int64_t> seqs, starts;

  BucketBatches(std::vector<int64_t> share, const std::vector<int64_t>& lengths, int64_t B, int64_t pool,
                bool drop_last, uint64_t seed, uint64_t pass) {
    const auto n = static_cast<int64_t>(share.size());
    sort_pools(share, lengths, saturating_product(pool, B));
    const int64_t nb = batch_count(n, B, drop_last);
    const auto cut_start = [&](int64_t c) { return std::min(c * B, n); };  // batch c as cut
    const Permutation batch_perm(static_cast<uint64_t>(nb), seed ^ kBatchOrderSalt, pass);
    seqs.reserve(share.size());
    starts.reserve(static_cast<size_t>(nb) + 1);
    for (int64_t g = 0; g < nb; ++g) {
      const auto c = static_cast<int64_t>(batch_perm(static_cast<uint64_t>(g)));
      starts.push_back(static_cast<int64_t>(seqs.size()));
      seqs.insert(seqs.end(), share.begin() + cut_start(c), share.begin() + cut_start(c + 1));
    }
    starts.push_back(static_cast<int64_t>(seqs.size()));
  }
  int64_t count() const { return static_cast<int64_t>(starts.size()) - 1; }
};

// Positions first, first + world, ... of `order`: `size` of them.
std::vector<int64_t> rank_positions(const std::vector<int64_t>& order, int64_t first, int64_t world, int64_t size) {
  std::vector<int64_t> share(static_cast<size_t>(size));
  for (int64_t q = 0; q < size; ++q) share[static_cast<size_t>(q)] = order[static_cast<size_t>(first + q * world)];
  return share;
}

// Refuses a read of more bucketed batches than rank `rank` of its configuration has (`nb`).
void require_batches_read(const PassRead& r, int64_t rank, int64_t nb, uint64_t pass) {
  if (r.batches <= nb) return;
  throw ArgumentError("a state says each of " + std::to_string(r.world_size) + " ranks read " +
                      std::to_string(r.batches) + " bucketed batches of " + std::to_string(r.batch_size) + " of pass " +
                      std::to_string(pass) + ", which gives rank " + std::to_string(rank) + " only " + std::to_string(nb));
}

// The token budget: how many steps a sequence keeps and what a batch of them costs.
struct TokenBudget {
  const std::vector<int64_t>& lengths;
  const PadSpec& pad;
  int64_t tokens;

  int64_t kept(int64_t seq) const {
    const int64_t len = lengths[static_cast<size_t>(seq)];
    return pad.max_len > 0 ? std::min(len, pad.max_len) : len;
  }
  // The length a batch whose longest kept sequence has `longest` steps is padded to, counted as
  // one step when it is 0 (a batch of empty sequences), so that a batch has a bound.
  int64_t length(int64_t longest) const { return std::max<int64_t>(1, pad.padded_length(longest)); }
  // Whether `rows` rows padded to `length` steps fit the budget.
  bool fits(int64_t rows, int64_t len) const { return rows <= tokens / len; }

  // Cuts seqs[0, n) greedily into batches (each takes sequences while they fit, at least one):
  // appends each batch's start, offset by `at`, to `starts`.
  void cut(const int64_t* seqs, int64_t n, int64_t at, std::vector<int64_t>& starts) const {
    int64_t rows = 0, longest = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t grown = std::max(longest, kept(seqs[i]));
      if (rows == 0 || !fits(rows + 1, length(grown))) {
        starts.push_back(at + i);
        rows = 0;
        longest = kept(seqs[i]);
      } else {
        longest = grown;
      }
      ++rows;
    }
  }
};

// Best-fit decreasing packing of one pool (seqs[0, n)) into rows of `L` steps, appended to
// `row_start`/`pieces` (rows as ranges of pieces). Sequences longer than L first give their
// full pieces of L steps, a row each, in the pool's order; every sequence's last piece (its
// whole self when it has at most L steps, none when its length is a multiple of L) is then
// placed, longest first (ties in the pool's order), into the row with the least room that still
// holds it (the earliest such row on a tie), or else a new row. Empty sequences have no piece.
void best_fit_pool(const int64_t* seqs, int64_t n, const std::vector<int64_t>& lengths, int64_t L,
                   std::vector<int64_t>& row_start, std::vector<PlanPiece>& pieces) {
  std::vector<std::vector<PlanPiece>> rows;
  std::vector<PlanPiece> last;  // the pieces placed by best fit
  for (int64_t i = 0; i < n; ++i) {
    const int64_t seq = seqs[i], len = lengths[static_cast<size_t>(seq)];
    const int64_t full = len / L;
    for (int64_t j = 0; j < full; ++j) rows.push_back({PlanPiece{seq, j * L, L}});
    if (len % L > 0) last.push_back(PlanPiece{seq, full * L, len % L});
  }
  std::stable_sort(last.begin(), last.end(), [](const PlanPiece& a, const PlanPiece& b) { return a.count > b.count; });
  std::set<std::pair<int64_t, size_t>> open;  // (room left, row) of the rows with room
  for (const PlanPiece& p : last) {
    const auto it = open.lower_bound({p.count, 0});
    size_t row;
    int64_t room;
    if (it != open.end()) {
      row = it->second;
      room = it->first - p.count;
      open.erase(it);
      rows[row].push_back(p);
    } else {
      row = rows.size();
      room = L - p.count;
      rows.push_back({p});
    }
    if (room > 0) open.insert({room, row});
  }
  for (const auto& r : rows) {
    pieces.insert(pieces.end(), r.begin(), r.end());
    row_start.push_back(static_cast<int64_t>(pieces.size()));
  }
}

}  // namespace

PassPlan PassPlan::build(const std::vector<int64_t>& lengths, const OrderSpec& order, const PackSpec& pack,
                         const PadSpec& pad, uint64_t pass) {
  PassPlan plan;
  const int64_t B = order.batch_size;
  const int64_t all = static_cast<int64_t>(lengths.size());
  plan.seqs_ = pass_order(all, order, pass);
  plan.rank_ = order.rank;
  plan.world_ = order.world_size;
  plan.max_len_ = pad.max_len;

  if (pack.pack && pack.best_fit) {
    const int64_t L = pad.max_len;
    const int64_t room = saturating_product(pack.bucket_pool, L);
    std::vector<int64_t> row_start{0};
    std::vector<PlanPiece> pieces;
    for (int64_t s = 0; s < all;) {  // pools: consecutive sequences until their steps reach `room`
      int64_t e = s, steps = 0;
      while (e < all && steps < room) steps += std::min(lengths[plan.seqs_[e++]], kMaxInt64 - steps);
      best_fit_pool(plan.seqs_.data() + s, e - s, lengths, L, row_start, pieces);
      s = e;
    }
    const int64_t K = static_cast<int64_t>(row_start.size()) - 1;
    plan.units_ = K;
    // The rows depend on the pass's order alone: an elastic resume shares those from
    // order.offset_in(pass) on (pass_row).
    plan.offset_ = std::min(order.offset_in(pass), K);
    plan.rows_ = pass_share_size(order, K, pass);
    const Permutation row_perm(static_cast<uint64_t>(K), order.seed ^ kBatchOrderSalt, pass);
    plan.row_start_.reserve(static_cast<size_t>(plan.rows_) + 1);
    plan.row_start_.push_back(0);
    for (int64_t i = 0; i < plan.rows_; ++i) {
      const int64_t g = plan.pass_row(i);
      const int64_t r = order.shuffle ? static_cast<int64_t>(row_perm(static_cast<uint64_t>(g))) : g;
      plan.pieces_.insert(plan.pieces_.end(), pieces.begin() + row_start[r], pieces.begin() + row_start[r + 1]);
      plan.row_start_.push_back(static_cast<int64_t>(plan.pieces_.size()));
    }
    plan.seqs_.clear();
    plan.seqs_.shrink_to_fit();
    plan.num_batches_ = batch_count(plan.rows_, B, order.drop_last);
    return plan;
  }

  if (pack.pack) {
    plan.cum_.resize(static_cast<size_t>(all) + 1, 0);
    for (int64_t i = 0; i < all; ++i) plan.cum_[i + 1] = plan.cum_[i] + lengths[plan.seqs_[i]];
    const int64_t pass_rows = (plan.total_steps() + pad.max_len - 1) / pad.max_len;
    plan.units_ = pass_rows;
    // Rows are cut from the pass's order whatever batch_size and world_size are, so an elastic
    // resume shares the rows left from order.offset_in(pass) on, as plain sequences do.
    plan.offset_ = std::min(order.offset_in(pass), pass_rows);
    plan.rows_ = pass_share_size(order, pass_rows, pass);
    plan.num_batches_ = batch_count(plan.rows_, B, order.drop_last);
    return plan;
  }

  if (pack.batch_tokens > 0) {
    const TokenBudget budget{lengths, pad, pack.batch_tokens};
    std::vector<int64_t> cuts;  // where each batch of the pass starts in plan.seqs_
    if (!pack.bucket) {
      budget.cut(plan.seqs_.data(), all, 0, cuts);
    } else {
      // Pools: consecutive sequences while their steps, each padded alone, stay within
      // bucket_pool budgets (at least one); each sorted by length (stable) and cut.
      const int64_t room = saturating_product(pack.bucket_pool, pack.batch_tokens);
      const auto by_length = [&](int64_t a, int64_t b) { return lengths[a] < lengths[b]; };
      for (int64_t s = 0; s < all;) {
        int64_t e = s + 1, steps = budget.length(budget.kept(plan.seqs_[s]));
        while (e < all && budget.length(budget.kept(plan.seqs_[e])) <= room - steps) {
          steps += budget.length(budget.kept(plan.seqs_[e++]));
        }
        std::stable_sort(plan.seqs_.begin() + s, plan.seqs_.begin() + e, by_length);
        budget.cut(plan.seqs_.data() + s, e - s, s, cuts);
        s = e;
      }
    }
    cuts.push_back(all);
    int64_t K = static_cast<int64_t>(cuts.size()) - 1;
    if (order.drop_last && K > 0) --K;  // the last batch cut: the one the pass's end closed
    const Permutation batch_perm(static_cast<uint64_t>(K), order.seed ^ kBatchOrderSalt, pass);
    // The pass's batches are cut by batch_tokens alone, whatever world_size is: after an elastic
    // resume in this pass the ranks share those from order.offset_in(pass) on.
    plan.units_ = K;
    const int64_t offset = std::min(order.offset_in(pass), K);
    const int64_t per_rank = (K - offset) / order.world_size;
    std::vector<int64_t> seqs;
    plan.starts_.reserve(static_cast<size_t>(per_rank) + 1);
    for (int64_t q = 0; q < per_rank; ++q) {
      const int64_t g = offset + q * order.world_size + order.rank;
      const int64_t c = pack.bucket ? static_cast<int64_t>(batch_perm(static_cast<uint64_t>(g))) : g;
      plan.starts_.push_back(static_cast<int64_t>(seqs.size()));
      seqs.insert(seqs.end(), plan.seqs_.begin() + cuts[c], plan.seqs_.begin() + cuts[c + 1]);
    }
    plan.starts_.push_back(static_cast<int64_t>(seqs.size()));
    plan.seqs_ = std::move(seqs);
    plan.num_batches_ = per_rank;
    return plan;
  }

  // This rank's sequences: positions rank, rank + world, ... of the pass's order; after an
  // elastic resume in this pass, offset + rank, offset + rank + world, ... (pass_share_size).
  // Bucketed batches resumed so are cut from what the earlier configurations left of the pass.
  const bool after_reads = pack.bucket && order.resumes_in(pass) && !order.resume_reads.empty();
  if (after_reads) {
    plan.seqs_ = unread_sequences(lengths, order, pack, pass, order.resume_reads);
    const int64_t read = all - static_cast<int64_t>(plan.seqs_.size());
    if (read != order.offset_in(pass)) {
      throw ArgumentError("OrderSpec.resume_offset=" + std::to_string(order.offset_in(pass)) +
                          " disagrees with resume_reads, which read " + std::to_string(read) + " sequences of pass " +
                          std::to_string(pass));
    }
  }
  const int64_t offset = after_reads ? 0 : order.offset_in(pass);
  const int64_t n = pass_share_size(order, all, pass);
  if (pack.bucket) {
    BucketBatches cut(rank_positions(plan.seqs_, offset + order.rank, order.world_size, n), lengths, B, pack.bucket_pool, order.drop_last, order.seed, pass);
    plan.num_batches_ = cut.count();
    plan.seqs_ = std::move(cut.seqs);
    plan.starts_ = std::move(cut.starts);
    return plan;
  }
  for (int64_t q = 0; q < n; ++q) plan.seqs_[q] = plan.seqs_[offset + q * order.world_size + order.rank];
  plan.seqs_.resize(static_cast<size_t>(n));
  const int64_t nb = batch_count(n, B, order.drop_last);
  plan.starts_.resize(static_cast<size_t>(nb) + 1);
  for (int64_t c = 0; c <= nb; ++c) plan.starts_[c] = std::min(c * B, n);
  plan.num_batches_ = nb;
  return plan;
}

std::vector<int64_t> unread_sequences(const std::vector<int64_t>& lengths, const OrderSpec& order,
                                      const PackSpec& pack, uint64_t pass, const std::vector<PassRead>& reads) {
  const auto all = static_cast<int64_t>(lengths.size());
  std::vector<int64_t> left = pass_order(all, order, pass);
  std::vector<char> read(static_cast<size_t>(all), 0);
  for (const PassRead& r : reads) {
    const auto n = static_cast<int64_t>(left.size());
    for (int64_t rank = 0; rank < r.world_size; ++rank) {
      const int64_t size = rank_share_size(n, rank, r.world_size, r.batch_size, order.drop_last);
      const BucketBatches cut(rank_positions(left, rank, r.world_size, size), lengths, r.batch_size,
                              pack.bucket_pool, order.drop_last, order.seed, pass);
      require_batches_read(r, rank, cut.count(), pass);
      for (int64_t i = 0; i < cut.starts[static_cast<size_t>(r.batches)]; ++i) read[static_cast<size_t>(cut.seqs[i])] = 1;
    }
    left.erase(std::remove_if(left.begin(), left.end(), [&](int64_t s) { return read[static_cast<size_t>(s)] != 0; }),
               left.end());
  }
  return left;
}

int64_t sequences_read(int64_t n, const OrderSpec& order, uint64_t pass, const std::vector<PassRead>& reads) {
  int64_t left = n;
  for (const PassRead& r : reads) {
    const int64_t B = r.batch_size;
    int64_t read = 0;
    for (int64_t rank = 0; rank < r.world_size; ++rank) {
      const int64_t size = rank_share_size(left, rank, r.world_size, B, order.drop_last);
      const int64_t nb = batch_count(size, B, order.drop_last);
      require_batches_read(r, rank, nb, pass);
      // Every batch read is full but the share's last as cut (BucketBatches: the short one
      // without drop_last), which the batch shuffle delivers somewhere in the pass.
      int64_t steps = r.batches * B;
      if (!order.drop_last && size % B != 0) {
        const Permutation batch_perm(static_cast<uint64_t>(nb), order.seed ^ kBatchOrderSalt, pass);
        for (int64_t g = 0; g < r.batches; ++g) {
          if (static_cast<int64_t>(batch_perm(static_cast<uint64_t>(g))) == nb - 1) steps -= B - size % B;
        }
      }
      read += steps;
    }
    left -= read;
  }
  return n - left;
}

int64_t PassPlan::piece_at(int64_t pos) const {
  // The last sequence starting at or before `pos`; empty sequences share its start and are skipped.
  const auto it = std::upper_bound(cum_.begin(), cum_.end(), pos);
  return static_cast<int64_t>(it - cum_.begin()) - 1;
}

void PassPlan::row_pieces(int64_t i, std::vector<PlanPiece>& out) const {
  out.clear();
  if (!row_start_.empty()) {  // best fit: stored
    out.assign(pieces_.begin() + row_start_[static_cast<size_t>(i)], pieces_.begin() + row_start_[static_cast<size_t>(i) + 1]);
    return;
  }
  // Back to back: the stream's steps [row * max_len, (row + 1) * max_len).
  int64_t pos = pass_row(i) * max_len_;
  const int64_t end = std::min(pos + max_len_, total_steps());
  for (int64_t k = piece_at(pos); pos < end; ++k) {
    const int64_t take = std::min(cum_[static_cast<size_t>(k) + 1], end) - pos;
    if (take <= 0) continue;  // an empty sequence
    out.push_back(PlanPiece{seqs_[static_cast<size_t>(k)], pos - cum_[static_cast<size_t>(k)], take});
    pos += take;
  }
}

PassSizes::PassSizes(std::vector<int64_t> lengths, const OrderSpec& order, const PackSpec& pack, const PadSpec& pad)
    : lengths_(std::move(lengths)),
      order_(order),
      pack_(pack),
      pad_(pad),
      // Virtual epochs resumed elastically: the stream runs from the resumed pass on.
      base_(order.resume_step >= 0 && order.steps_per_epoch > 0 ? static_cast<uint64_t>(order.resume_pass) : 0) {
  order_.validate();
  pack_.validate();
  pad_.validate(pack_.pack);
  if (pack_.batch_tokens > 0) {
    for (size_t i = 0; i < lengths_.size(); ++i) {
      const int64_t kept = pad_.max_len > 0 ? std::min(lengths_[i], pad_.max_len) : lengths_[i];
      if (pad_.padded_length(kept) > pack_.batch_tokens) {
        throw ArgumentError("PackSpec.batch_tokens=" + std::to_string(pack_.batch_tokens) + " cannot hold sequence " +
                            std::to_string(i) + " padded to " + std::to_string(pad_.padded_length(kept)) + " steps");
      }
    }
  }
}

int64_t PassSizes::units(uint64_t pass) const {
  std::lock_guard<std::mutex> lk(mu_);
  const auto it = units_.find(pass);
  if (it != units_.end()) return it->second;
  const int64_t k = PassPlan::build(lengths_, order_, pack_, pad_, pass).pass_units();
  if (units_.size() >= 64) units_.erase(units_.begin());
  units_.emplace(pass, k);
  return k;
}

std::pair<int64_t, int64_t> PassSizes::count(uint64_t pass) const {
  if (pass >= base_ && pass - base_ < items_.size()) return {items_[pass - base_], batches_[pass - base_]};
  const auto it = counted_.find(pass);
  if (it != counted_.end()) return it->second;
  const PassPlan plan = PassPlan::build(lengths_, order_, pack_, pad_, pass);
  // Virtual epochs stream every rank through an equal share of each pass's best-fit rows (the
  // K % world_size left over sit it out), so that all ranks cross passes together.
  const int64_t rows = order_.steps_per_epoch > 0 ? stream_share_size(order_, plan.pass_units(), pass) : plan.num_rows();
  const std::pair<int64_t, int64_t> c{pack_.pack ? rows : plan.num_batches(), plan.num_batches()};
  if (counted_.size() >= 64) counted_.erase(counted_.begin());
  counted_.emplace(pass, c);
  return c;
}

void PassSizes::count_up_to(uint64_t pass) const {
  while (items_.size() <= pass) {
    const std::pair<int64_t, int64_t> c = count(base_ + items_.size());
    items_.push_back(c.first);
    batches_.push_back(c.second);
    items_before_.push_back(items_before_.back() + c.first);
    batches_before_.push_back(batches_before_.back() + c.second);
  }
}

int64_t PassSizes::batches(uint64_t pass) const {
  std::lock_guard<std::mutex> lk(mu_);
  return count(pass).second;
}

int64_t PassSizes::items(uint64_t pass) const {
  std::lock_guard<std::mutex> lk(mu_);
  return count(pass).first;
}

StreamPosition PassSizes::locate(int64_t index, bool by_items) const {
  require_arg(index >= 0, "index", ">= 0", index);
  std::lock_guard<std::mutex> lk(mu_);
  const std::vector<int64_t>& before = by_items ? items_before_ : batches_before_;
  while (before.back() <= index) {
    const uint64_t pass = base_ + items_.size();
    count_up_to(items_.size());
    // (The pass an elastic resume took over may have nothing left for this rank.)
    const bool resumed = order_.resume_step >= 0 && order_.steps_per_epoch > 0 && pass == base_;
    if ((by_items ? items_ : batches_).back() == 0 && !resumed) {
      throw ArgumentError("pass " + std::to_string(pass) + " holds no " + (by_items ? "row" : "batch") +
                          " for rank " + std::to_string(order_.rank) + ": virtual epochs cannot run on across it");
    }
  }
  const auto it = std::upper_bound(before.begin(), before.end(), index);
  const auto pass = static_cast<size_t>(it - before.begin()) - 1;
  return {base_ + static_cast<uint64_t>(pass), index - before[pass]};
}

}  // namespace fastfeed
