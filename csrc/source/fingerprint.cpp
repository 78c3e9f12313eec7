#include "source/fingerprint.hpp"

#include <algorithm>
#include <cstring>

namespace fastfeed {

namespace {

constexpr uint64_t kPrime = 0x100000001b3ull;  // FNV-1a's

void mix(uint64_t& h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= kPrime;
  }
}

// FNV-1a over 8-byte words in four independent lanes: one multiply chain would cap it at a
// few GB/s, four keep it near memory speed. Each step is a bijection of its lane, so any
// changed word changes the result.
void mix_words(uint64_t& h, const std::byte* p, size_t n) {
  uint64_t lane[4] = {h, h ^ 0x9e3779b97f4a7c15ull, h ^ 0xbf58476d1ce4e5b9ull, h ^ 0x94d049bb133111ebull};
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int k = 0; k < 4; ++k) {
      uint64_t w;
      std::memcpy(&w, p + i + 8 * k, 8);
      lane[k] = (lane[k] ^ w) * kPrime;
    }
  }
  for (const uint64_t l : lane) mix(h, &l, sizeof l);
  mix(h, p + i, n - i);
}

void mix_ends(uint64_t& h, const Series& s, int64_t rows) {
  const int64_t head = std::min(rows, s.length);
  const int64_t tail_start = std::max(head, s.length - rows);
  if (head > 0) mix(h, s.row(0), static_cast<size_t>(head) * s.row_bytes());
  if (tail_start < s.length) mix(h, s.row(tail_start), static_cast<size_t>(s.length - tail_start) * s.row_bytes());
}

uint64_t total_bytes(const std::vector<Series>& series) {
  uint64_t n = 0;
  for (const Series& s : series) n += static_cast<uint64_t>(s.length) * s.row_bytes();
  return n;
}

}  // namespace

uint64_t fingerprint(const std::vector<Series>& series, int64_t rows, uint64_t full_bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  const bool whole = total_bytes(series) <= full_bytes;
  mix(h, &whole, sizeof whole);
  const size_t n = series.size();
  const size_t ends = 16;
  for (size_t i = 0; i < n; ++i) {
    const Series& s = series[i];
    if (whole) {
      mix(h, &s.length, sizeof s.length);
      if (s.length > 0) mix_words(h, s.row(0), static_cast<size_t>(s.length) * s.row_bytes());
    } else if (i < ends || i + ends >= n) {
      mix(h, &s.length, sizeof s.length);
      mix_ends(h, s, rows);
    }
  }
  return h;
}

}  // namespace fastfeed
