// What a block's data arrays look like: their dtypes, normalisation, NaN/Inf checks and
// feature shapes. One spec for windows and whole sequences alike.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/dtype.hpp"
#include "common/errors.hpp"
#include "source/convert.hpp"

namespace fastfeed {

// How one field beside x and y (covariates, known, static) is written: element type,
// statistics and feature shape.
struct FieldOutput {
  DType dtype = DType::Float32;
  Normalization norm;
  std::vector<int64_t> feat;
};

struct OutputSpec {
  DType x_dtype = DType::Float32;
  DType y_dtype = DType::Float32;
  Normalization x_norm;  // applied to inputs
  // Applied to window targets (the inputs' statistics when targets are the source itself);
  // whole sequences never normalise their targets or labels.
  Normalization y_norm;
  bool check_finite = false;   // a NaN or Inf in a sample's steps fails that sample
  // check_finite="mask": a NaN or Inf is written as 0, and the finite values are marked in the
  // x and y fields' "observed" masks.
  bool mask_non_finite = false;
  std::vector<int64_t> x_feat;  // the feature shape of one input step (x_dtype elements)
  std::vector<int64_t> y_feat;  // of one target step, or of one label
  bool with_index = false;      // "series" and "start" (int64) per sample: the series or sequence, the first step
  FieldOutput static_out;       // "static": the row of a table with one row per series or sequence, when given
};

// Refuses a feature shape that does not hold `row_elems` elements, the size of `what` (one
// step, or one label, of the data it describes): a block's arrays get their shapes from it, and a wrong one
// would make them larger than their buffers.
inline void check_feat(const std::vector<int64_t>& feat, int64_t row_elems, const char* field, const char* what) {
  int64_t n = 1;
  for (int64_t d : feat) n *= d;
  if (n == row_elems) return;
  std::string shape;  // as Python writes the tuple
  for (int64_t d : feat) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
  if (feat.size() == 1) shape += ",";
  throw ArgumentError(std::string(field) + " (" + shape + ") holds " + std::to_string(n) + " elements, but " + what + " has " + std::to_string(row_elems));
}

}  // namespace fastfeed
