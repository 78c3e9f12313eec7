#include "order/permutation.hpp"

#include <string>

#include "common/errors.hpp"

namespace fastfeed {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

Permutation::Permutation(uint64_t n, uint64_t seed, uint64_t epoch) : n_(n) {
  int bits = 2;
  while (bits < 64 && (uint64_t{1} << bits) < n) ++bits;
  bits += bits & 1;  // balanced halves need an even bit count
  half_bits_ = bits / 2;
  half_mask_ = (uint64_t{1} << half_bits_) - 1;
  uint64_t key = splitmix64(splitmix64(seed) ^ epoch);
  for (int i = 0; i < kRounds; ++i) keys_[i] = splitmix64(key + static_cast<uint64_t>(i));
}

uint64_t Permutation::encrypt(uint64_t x) const {
  uint64_t left = x >> half_bits_;
  uint64_t right = x & half_mask_;
  for (int i = 0; i < kRounds; ++i) {
    uint64_t next = left ^ (splitmix64(right ^ keys_[i]) & half_mask_);
    left = right;
    right = next;
  }
  return (left << half_bits_) | right;
}

uint64_t Permutation::operator()(uint64_t position) const {
  // Outside [0, n) the cycle walk below would never end.
  if (position >= n_) {
    throw ArgumentError("Permutation: position " + std::to_string(position) + " is outside [0, " +
                        std::to_string(n_) + ")");
  }
  if (n_ <= 1) return position;
  uint64_t x = encrypt(position);
  while (x >= n_) x = encrypt(x);
  return x;
}

}  // namespace fastfeed
