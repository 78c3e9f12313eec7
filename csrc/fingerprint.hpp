// A cheap hash of some data: enough to tell a resumed Feeder that its data changed.
#pragma once
#include <cstdint>
#include <vector>

#include "series.hpp"

namespace fastfeed {

// FNV-1a over the first and last `rows` steps of the first and last 16 series (and their
// lengths): reading a few pages, never the whole data.
uint64_t fingerprint_rows(const std::vector<Series>& series, int64_t rows);

}  // namespace fastfeed
