// NumPy <-> core conversions: arrays and .npy files as Series, pooled buffers as arrays, dtypes.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/dtype.hpp"
#include "pipeline/block.hpp"
#include "source/series.hpp"

namespace fastfeed::python {

namespace py = pybind11;

// The core dtype of a NumPy dtype; ArgumentError for one the core does not read.
DType dtype_of(const py::dtype& dt);
// The core dtype called `name` ("float32", "bfloat16", ...); ArgumentError for another name.
DType dtype_named(const std::string& name);
// NumPy's name for the storage of a core dtype (bfloat16 travels as uint16 bit patterns).
py::dtype numpy_dtype(DType t);

// A NumPy array or an opened .npy file, as the core's Series. Python keeps arrays alive.
Series to_series(const py::handle& obj);
// Arrays and .npy files are one series each; a RaggedFile (a dataset's values) or a Ragged
// (ragged_view.hpp: Arrow, Hugging Face, Megatron sources) is all its sequences.
std::vector<Series> to_series_list(const py::list& items);

// Hands a pooled buffer to NumPy without a copy: the array's base owns a reference, and the
// buffer goes back to the pool only when the last array (or tensor sharing it) is gone.
// `rows` >= 0 cuts the first axis to that many rows.
py::array wrap_array(const Array& a, int64_t rows = -1);

}  // namespace fastfeed::python
