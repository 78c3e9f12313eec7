// The order of a weighted mixture of sources: which component each position of the stream
// reads, and which of that component's items.
#pragma once
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "order/order.hpp"

namespace fastfeed {

// A mixture's components, as the stream reads them.
struct MixSpec {
  std::vector<double> weights;     // >= 0, not all 0
  std::vector<int64_t> first;      // the component's first item (sample or sequence) in the joint numbering
  std::vector<int64_t> count;      // its items (> 0 for a component of weight > 0)
  std::vector<uint64_t> keys;      // each component's shuffle key (the Feeder's seed and the component's name)
  // Where the weights took effect: the stream position (over all ranks) and every component's
  // items read before it. A state saved with other weights resumes from here.
  int64_t origin = 0;
  std::vector<int64_t> base;
  // Each component's first series (or sequence) in the joint list: batch.series counts from it.
  std::vector<int64_t> first_series;
  // Elastic resume: this rank's stream item `resume_item` reads stream position `resume_position`
  // (a state saved with another world_size or batch_size); items before it are not read.
  int64_t resume_item = 0;
  int64_t resume_position = 0;
  // A loaded state's point (>= origin, or -1) and every component's items read before it: the
  // stream is found from there, not replayed from the origin.
  int64_t known_position = -1;
  std::vector<int64_t> known_counts;

  void validate() const;
};

// Position n of the mixture's stream (counted over all ranks: rank r reads n = q * world + r)
// goes to the component that Balinski and Young's quota method gives the (n - origin + 1)-th
// seat: among the components whose count is below their quota (n - origin + 1) * w / sum(w),
// the one with the largest w / (count + 1), the first on a tie. Every component then stays
// within one item of its quota at every point. Its k-th item is the (k mod count)-th position
// of its pass k / count, shuffled by its own key when the order shuffles.
class MixOrder {
 public:
  MixOrder(MixSpec spec, bool shuffle);

  // For positions n = first, first + step, ... (`n` of them), the joint item and the component.
  void items(int64_t first, int64_t step, int64_t n, int64_t* item, int64_t* component) const;
  // Every component's items read before stream position n (>= origin).
  std::vector<int64_t> counts_at(int64_t n) const;
  size_t components() const { return spec_.weights.size(); }
  // The stream position of this rank's item q: rank r of world w reads positions r, r + w, ...
  // from the resume point on.
  int64_t position_of(int64_t q, const OrderSpec& order) const {
    return spec_.resume_position + (q - spec_.resume_item) * order.world_size + order.rank;
  }
  const MixSpec& spec() const { return spec_; }

 private:
  // Counts at position n, simulated from the nearest checkpoint.
  std::vector<int64_t> seek(int64_t n) const;
  int pick(const std::vector<int64_t>& counts, int64_t seats) const;

  MixSpec spec_;
  bool shuffle_;
  double total_ = 0;
  // Remembers the quota method's counts (without base) at `offset` from the origin.
  void remember(int64_t offset, std::vector<int64_t> counts) const;

  // Points of the stream whose counts (without base) are known, by offset from the origin: the
  // origin, a loaded state's point, one every kCheckpointEvery positions replayed, and where
  // recent items() calls ended (blocks read the stream in order, so the next call starts
  // there). Recent ends beyond kRecent are forgotten; checkpoints stay (one per 65,536 positions).
  static constexpr int64_t kCheckpointEvery = 1 << 16;
  static constexpr size_t kRecent = 64;
  mutable std::mutex mu_;
  mutable std::map<int64_t, std::vector<int64_t>> known_;
  mutable std::deque<int64_t> recent_;  // offsets in known_ that are recent ends, oldest first
};

}  // namespace fastfeed
