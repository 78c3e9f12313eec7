// The names of the outputs a block may carry (Block::fields), spelled once. Python receives
// them as the keys of a dict, so these strings are also the names the Python side reads.
#pragma once
#include <string_view>

namespace fastfeed::field {

// Windows: x (B, window, *feat) and, with targets, y (B, horizon, *tfeat).
// Whole sequences: x (B, L, *feat); y: step targets (B, L, *tfeat) or labels (B, *tfeat);
// mask (B, L) bool and lengths (B,) int64, in every batch; packed rows add segment_ids (B, L)
// int32, position_ids (B, L) int64 and cu_seqlens (segments + 1,) int32 (not per row).
inline constexpr std::string_view kX = "x", kY = "y", kMask = "mask", kLengths = "lengths",
                                  kSegmentIds = "segment_ids", kPositionIds = "position_ids",
                                  kCuSeqlens = "cu_seqlens";
// Beside windows (each optional): covariates (B, window, *cfeat), known (B, window + lookahead,
// *kfeat), static (B, *sfeat), series and start (B,) int64, observed and y_observed (bool,
// the shapes of x and y, with check_finite="mask"), scale and loc (B, *feat) float32.
inline constexpr std::string_view kCovariates = "covariates", kKnown = "known", kStatic = "static",
                                  kSeries = "series", kStart = "start", kObserved = "observed",
                                  kYObserved = "y_observed", kScale = "scale", kLoc = "loc";
// A mixture's batches with the index: each sample's component (B,) int64, its place in mix()'s dict.
inline constexpr std::string_view kSource = "source";
// Indices only, for a source kept whole on a GPU: windows carry each sample's flat start
// (n,) int64 instead of x and y; sequences carry the pieces table (n_pieces, 6) int64 (row,
// col, sequence, first step, steps, segment; not per row) instead of x, mask and the ids.
inline constexpr std::string_view kStarts = "starts", kPieces = "pieces";

}  // namespace fastfeed::field
