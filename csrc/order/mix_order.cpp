#include "order/mix_order.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <string>

#include "common/errors.hpp"
#include "order/permutation.hpp"

namespace fastfeed {

void MixSpec::validate() const {
  const size_t k = weights.size();
  if (k == 0) throw ArgumentError("a mixture needs at least one component");
  if (first.size() != k || count.size() != k || keys.size() != k || base.size() != k) {
    throw ArgumentError("MixSpec: weights, first, count, keys and base must have one entry per component");
  }
  bool any = false;
  for (size_t i = 0; i < k; ++i) {
    if (!(weights[i] >= 0) || !std::isfinite(weights[i])) {
      throw ArgumentError("MixSpec: weight " + std::to_string(i) + " must be finite and >= 0");
    }
    if (weights[i] > 0 && count[i] <= 0) {
      throw ArgumentError("MixSpec: component " + std::to_string(i) + " has weight > 0 but no items");
    }
    if (base[i] < 0) throw ArgumentError("MixSpec: base counts must be >= 0");
    if (first[i] < 0 || count[i] < 0) throw ArgumentError("MixSpec: first and count must be >= 0");
    any = any || weights[i] > 0;
  }
  if (!any) throw ArgumentError("MixSpec: every weight is 0");
  require_arg(origin >= 0, "MixSpec.origin", ">= 0", origin);
  require_arg(resume_item >= 0, "MixSpec.resume_item", ">= 0", resume_item);
  require_arg(resume_position >= 0, "MixSpec.resume_position", ">= 0", resume_position);
  if (!first_series.empty() && first_series.size() != k) {
    throw ArgumentError("MixSpec: first_series must have one entry per component");
  }
  if (known_position >= origin) {
    if (known_counts.size() != k) throw ArgumentError("MixSpec: known_counts must have one entry per component");
    int64_t seen = 0;
    for (size_t i = 0; i < k; ++i) {
      if (known_counts[i] < base[i]) throw ArgumentError("MixSpec: known_counts must be >= base");
      seen += known_counts[i] - base[i];
    }
    if (seen != known_position - origin) {
      throw ArgumentError("MixSpec: known_counts hold " + std::to_string(seen) + " items since the origin, not " +
                          std::to_string(known_position - origin));
    }
  }
}

MixOrder::MixOrder(MixSpec spec, bool shuffle) : spec_(std::move(spec)), shuffle_(shuffle) {
  spec_.validate();
  for (double w : spec_.weights) total_ += w;  // left to right, as the reference sums them
  known_.emplace(0, std::vector<int64_t>(spec_.weights.size(), 0));
  if (spec_.known_position >= spec_.origin) {  // a loaded state: its counts less the base
    std::vector<int64_t> counts = spec_.known_counts;
    for (size_t i = 0; i < counts.size(); ++i) counts[i] -= spec_.base[i];
    known_.emplace(spec_.known_position - spec_.origin, std::move(counts));
  }
}

int MixOrder::pick(const std::vector<int64_t>& counts, int64_t seats) const {
  int best = -1;
  double best_score = -1;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double w = spec_.weights[i];
    if (w <= 0) continue;
    const double quota = static_cast<double>(seats) * w / total_;
    if (!(static_cast<double>(counts[i]) < quota)) continue;
    const double score = w / static_cast<double>(counts[i] + 1);
    if (score > best_score) {
      best_score = score;
      best = static_cast<int>(i);
    }
  }
  // Some component is always below its quota (the quotas add up to `seats`, the counts to one
  // less); rounding could only hide it at astronomically many seats: then the largest score.
  if (best < 0) {
    for (size_t i = 0; i < counts.size(); ++i) {
      const double score = spec_.weights[i] / static_cast<double>(counts[i] + 1);
      if (spec_.weights[i] > 0 && score > best_score) {
        best_score = score;
        best = static_cast<int>(i);
      }
    }
  }
  return best;
}

void MixOrder::remember(int64_t offset, std::vector<int64_t> counts) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!known_.emplace(offset, std::move(counts)).second) return;
  if (offset % kCheckpointEvery == 0) return;  // a checkpoint: kept
  recent_.push_back(offset);
  if (recent_.size() > kRecent) {
    known_.erase(recent_.front());
    recent_.pop_front();
  }
}

std::vector<int64_t> MixOrder::seek(int64_t n) const {
  const int64_t offset = n - spec_.origin;
  if (offset < 0) {
    throw ArgumentError("MixOrder: position " + std::to_string(n) + " is before the mixture's origin " +
                        std::to_string(spec_.origin));
  }
  int64_t from = 0;
  std::vector<int64_t> counts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = std::prev(known_.upper_bound(offset));  // known_ holds offset 0
    from = it->first;
    counts = it->second;
  }
  for (int64_t s = from; s < offset; ++s) {
    ++counts[static_cast<size_t>(pick(counts, s + 1))];
    if ((s + 1) % kCheckpointEvery == 0 && offset - (s + 1) >= kCheckpointEvery) remember(s + 1, counts);
  }
  return counts;
}

std::vector<int64_t> MixOrder::counts_at(int64_t n) const {
  std::vector<int64_t> counts = seek(n);
  for (size_t i = 0; i < counts.size(); ++i) counts[i] += spec_.base[i];
  return counts;
}

void MixOrder::items(int64_t first, int64_t step, int64_t n, int64_t* item, int64_t* component) const {
  if (n <= 0) return;
  std::vector<int64_t> counts = seek(first);  // without base: the quota method's own counts
  int64_t position = first;
  for (int64_t out = 0; out < n; ++position) {
    const int c = pick(counts, position - spec_.origin + 1);
    const int64_t k = counts[static_cast<size_t>(c)] + spec_.base[static_cast<size_t>(c)];
    ++counts[static_cast<size_t>(c)];
    if ((position - first) % step != 0) continue;
    const auto size = static_cast<uint64_t>(spec_.count[static_cast<size_t>(c)]);
    const uint64_t pass = static_cast<uint64_t>(k) / size, index = static_cast<uint64_t>(k) % size;
    const uint64_t local = shuffle_ ? Permutation(size, spec_.keys[static_cast<size_t>(c)], pass)(index) : index;
    item[out] = spec_.first[static_cast<size_t>(c)] + static_cast<int64_t>(local);
    component[out] = c;
    ++out;
  }
  remember(position - spec_.origin, std::move(counts));
}

}  // namespace fastfeed
