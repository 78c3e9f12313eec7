#include "fingerprint.hpp"

#include <algorithm>

namespace fastfeed {

namespace {

void mix(uint64_t& h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
}

void mix_series(uint64_t& h, const Series& s, int64_t rows) {
  mix(h, &s.length, sizeof s.length);
  const int64_t head = std::min(rows, s.length);
  const int64_t tail_start = std::max(head, s.length - rows);
  if (head > 0) mix(h, s.row(0), static_cast<size_t>(head) * s.row_bytes());
  if (tail_start < s.length) mix(h, s.row(tail_start), static_cast<size_t>(s.length - tail_start) * s.row_bytes());
}

}  // namespace

uint64_t fingerprint_rows(const std::vector<Series>& series, int64_t rows) {
  uint64_t h = 0xcbf29ce484222325ull;
  const size_t n = series.size();
  const size_t ends = 16;
  for (size_t i = 0; i < n; ++i) {
    if (i < ends || i + ends >= n) mix_series(h, series[i], rows);
  }
  return h;
}

}  // namespace fastfeed
