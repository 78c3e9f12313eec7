// The order in which an epoch visits its samples.
#pragma once
#include <cstdint>

#include "permutation.hpp"

namespace fastfeed {

class EpochOrder {
 public:
  EpochOrder(int64_t n, bool shuffle, uint64_t seed, uint64_t epoch)
      : n_(n), shuffle_(shuffle), perm_(static_cast<uint64_t>(n), seed, epoch) {}

  int64_t size() const { return n_; }
  int64_t sample_at(int64_t position) const {
    return shuffle_ ? static_cast<int64_t>(perm_(static_cast<uint64_t>(position))) : position;
  }

 private:
  int64_t n_;
  bool shuffle_;
  Permutation perm_;
};

}  // namespace fastfeed
