#include "sequences/sequence_plan.hpp"

#include <algorithm>

#include "order/order.hpp"
#include "order/permutation.hpp"

namespace fastfeed {

namespace {

std::vector<int64_t> pass_order(int64_t n, const OrderSpec& spec, uint64_t pass) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  const Permutation perm(static_cast<uint64_t>(n), spec.seed, pass);
  for (int64_t q = 0; q < n; ++q) {
    order[static_cast<size_t>(q)] = spec.shuffle ? static_cast<int64_t>(perm(static_cast<uint64_t>(q))) : q;
  }
  return order;
}

// Sorts each pool of `pool` consecutive sequences by length (stable: ties keep their order).
void sort_pools(std::vector<int64_t>& seqs, const std::vector<int64_t>& lengths, int64_t pool) {
  const auto by_length = [&](int64_t a, int64_t b) { return lengths[a] < lengths[b]; };
  for (size_t s = 0; s < seqs.size(); s += static_cast<size_t>(pool)) {
    const size_t e = std::min(seqs.size(), s + static_cast<size_t>(pool));
    std::stable_sort(seqs.begin() + s, seqs.begin() + e, by_length);
  }
}

}  // namespace

PassPlan PassPlan::build(const std::vector<int64_t>& lengths, const OrderSpec& order, const PackSpec& pack,
                         int64_t max_len, uint64_t pass) {
  PassPlan plan;
  const int64_t B = order.batch_size;
  plan.seqs_ = pass_order(static_cast<int64_t>(lengths.size()), order, pass);
  plan.rank_ = order.rank;
  plan.world_ = order.world_size;

  if (pack.pack) {
    const int64_t all = static_cast<int64_t>(plan.seqs_.size());
    plan.cum_.resize(static_cast<size_t>(all) + 1, 0);
    for (int64_t i = 0; i < all; ++i) plan.cum_[i + 1] = plan.cum_[i] + lengths[plan.seqs_[i]];
    const int64_t pass_rows = (plan.total_steps() + max_len - 1) / max_len;
    plan.rows_ = rank_share_size(pass_rows, order.rank, order.world_size, B, order.drop_last);
    plan.num_batches_ = order.drop_last ? plan.rows_ / B : (plan.rows_ + B - 1) / B;
    return plan;
  }

  // This rank's sequences: positions rank, rank + world, ... of the pass's order.
  const int64_t n = rank_share_size(static_cast<int64_t>(plan.seqs_.size()), order.rank, order.world_size, B, order.drop_last);
  for (int64_t q = 0; q < n; ++q) plan.seqs_[q] = plan.seqs_[q * order.world_size + order.rank];
  plan.seqs_.resize(static_cast<size_t>(n));

  if (pack.bucket) sort_pools(plan.seqs_, lengths, pack.bucket_pool * B);
  int64_t nb = order.drop_last ? n / B : (n + B - 1) / B;
  // Batches as cut: batch c holds positions [c * B, min((c + 1) * B, n)).
  const auto cut_start = [&](int64_t c) { return std::min(c * B, n); };
  if (!pack.bucket) {
    plan.starts_.resize(static_cast<size_t>(nb) + 1);
    for (int64_t c = 0; c <= nb; ++c) plan.starts_[c] = cut_start(c);
    plan.num_batches_ = nb;
    return plan;
  }
  // Bucketed: the batches, each sorted inside, go out in a shuffled order, with or without
  // shuffle=True (bucketing promises shuffled batches); otherwise every pool would run from its
  // shortest batch to its longest.
  const Permutation batch_perm(static_cast<uint64_t>(nb), order.seed ^ kBatchOrderSalt, pass);
  std::vector<int64_t> seqs;
  seqs.reserve(plan.seqs_.size());
  plan.starts_.reserve(static_cast<size_t>(nb) + 1);
  for (int64_t g = 0; g < nb; ++g) {
    const int64_t c = static_cast<int64_t>(batch_perm(static_cast<uint64_t>(g)));
    plan.starts_.push_back(static_cast<int64_t>(seqs.size()));
    seqs.insert(seqs.end(), plan.seqs_.begin() + cut_start(c), plan.seqs_.begin() + cut_start(c + 1));
  }
  plan.starts_.push_back(static_cast<int64_t>(seqs.size()));
  plan.seqs_ = std::move(seqs);
  plan.num_batches_ = nb;
  return plan;
}

int64_t PassPlan::piece_at(int64_t pos) const {
  // The last sequence starting at or before `pos`; empty sequences share its start and are skipped.
  const auto it = std::upper_bound(cum_.begin(), cum_.end(), pos);
  return static_cast<int64_t>(it - cum_.begin()) - 1;
}

}  // namespace fastfeed
