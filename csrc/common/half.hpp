// float16 and bfloat16 bit conversions, rounding to nearest even exactly as NumPy and PyTorch do.
#pragma once
#include <cstdint>
#include <cstring>

namespace fastfeed {

template <class To, class From>
inline To bit_cast_(const From& from) {
  static_assert(sizeof(To) == sizeof(From), "sizes differ");
  To to;
  std::memcpy(&to, &from, sizeof(To));
  return to;
}

// Shifts `m` right by `s` bits, rounding to nearest with ties to even.
inline uint64_t shift_round_even(uint64_t m, int s) {
  if (s <= 0) return m;
  if (s >= 64) return 0;
  uint64_t kept = m >> s;
  uint64_t rest = m & ((uint64_t{1} << s) - 1);
  uint64_t halfway = uint64_t{1} << (s - 1);
  if (rest > halfway || (rest == halfway && (kept & 1))) ++kept;
  return kept;
}

// IEEE binary (float or double) bits -> binary16 bits, rounded once, straight from the source
// precision (NumPy converts double -> half directly, not through float).
template <int kMantBits, int kExpBits>
inline uint16_t ieee_to_half(uint64_t bits) {
  constexpr int kBias = (1 << (kExpBits - 1)) - 1;
  constexpr uint64_t kExpMask = (uint64_t{1} << kExpBits) - 1;
  const auto sign = static_cast<uint16_t>((bits >> (kMantBits + kExpBits - 15)) & 0x8000);
  const uint64_t exp_field = (bits >> kMantBits) & kExpMask;
  const uint64_t mant = bits & ((uint64_t{1} << kMantBits) - 1);
  if (exp_field == kExpMask) {  // inf or NaN; NaN keeps its top payload bits and stays NaN
    if (mant == 0) return sign | 0x7c00;
    auto payload = static_cast<uint16_t>(mant >> (kMantBits - 10));
    return sign | 0x7c00 | (payload == 0 ? 1 : payload);
  }
  if (exp_field == 0) return sign;  // zero or a source subnormal: far below half's range
  const int e = static_cast<int>(exp_field) - kBias;
  const uint64_t m = (uint64_t{1} << kMantBits) | mant;
  if (e > 15) return sign | 0x7c00;
  if (e >= -14) {
    // Normal: the rounding carry may ripple into the exponent, and from 15 into infinity.
    uint64_t h = (static_cast<uint64_t>(e + 15) << 10) + shift_round_even(m, kMantBits - 10) - 0x400;
    return sign | static_cast<uint16_t>(h >= 0x7c00 ? 0x7c00 : h);
  }
  // Subnormal in half: units of 2^-24.
  const int s = kMantBits - 24 - e;
  return sign | static_cast<uint16_t>(shift_round_even(m, s));
}

inline uint16_t float_to_half(float f) { return ieee_to_half<23, 8>(bit_cast_<uint32_t>(f)); }
inline uint16_t double_to_half(double d) { return ieee_to_half<52, 11>(bit_cast_<uint64_t>(d)); }

inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp_field = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp_field == 0x1f) {
    bits = sign | 0x7f800000 | (mant << 13);
  } else if (exp_field != 0) {
    bits = sign | ((exp_field + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal half: normalise into float
    int e = -1;
    do { mant <<= 1; ++e; } while ((mant & 0x400) == 0);
    bits = sign | static_cast<uint32_t>(112 - e) << 23 | ((mant & 0x3ff) << 13);
  }
  return bit_cast_<float>(bits);
}

// float -> bfloat16 bits as PyTorch rounds it (nearest even; any NaN becomes the quiet NaN 0x7fc0).
inline uint16_t float_to_bfloat16(float f) {
  if (f != f) return 0x7fc0;
  uint32_t u = bit_cast_<uint32_t>(f);
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

inline float bfloat16_to_float(uint16_t b) { return bit_cast_<float>(static_cast<uint32_t>(b) << 16); }

}  // namespace fastfeed
