// A keyed bijection over [0, n): shuffles any number of samples with O(1) memory.
#pragma once
#include <array>
#include <cstdint>

namespace fastfeed {

uint64_t splitmix64(uint64_t x);

// Position -> sample for one shuffled epoch, a pure function of (n, seed, epoch).
// A balanced Feistel network over the smallest power of four >= n, cycle-walked back into
// [0, n): each call costs a few hash rounds (fewer than four walks on average) and no table.
// fastfeed.reference.permutation implements the same function in NumPy; keep them in step.
class Permutation {
 public:
  static constexpr int kRounds = 6;

  Permutation(uint64_t n, uint64_t seed, uint64_t epoch);
  uint64_t operator()(uint64_t position) const;
  uint64_t size() const { return n_; }

 private:
  uint64_t encrypt(uint64_t x) const;

  uint64_t n_;
  int half_bits_ = 1;
  uint64_t half_mask_ = 1;
  std::array<uint64_t, kRounds> keys_{};
};

}  // namespace fastfeed
