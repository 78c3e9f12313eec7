// A hash of a source: enough to tell a resumed Feeder that its data changed.
#pragma once
#include <cstdint>
#include <vector>

#include "source/series.hpp"

namespace fastfeed {

// A 64-bit hash of the series' lengths and values. Sources of up to `full_bytes` bytes are hashed
// whole (any changed value shows); larger ones only by the first and last `rows` steps of the
// first and last 16 series, so that a state_dict() on a file of many GiB reads a few pages.
uint64_t fingerprint(const std::vector<Series>& series, int64_t rows, uint64_t full_bytes);

}  // namespace fastfeed
