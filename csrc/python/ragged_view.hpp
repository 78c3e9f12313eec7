// Many sequences cut out of a few arrays: sequence i is rows begin[i]..end[i] of values[chunk[i]].
// What Arrow columns of lists (their child values and offsets, one chunk per record batch),
// Hugging Face datasets (gathered through an indices mapping) and Megatron-LM indexed datasets
// (one memory-mapped .bin, cut by the .idx) become. It keeps the Python objects that own the
// memory (NumPy arrays over Arrow buffers or mmaps, NpyFile maps) alive for as long as it lives,
// and expands into one Series per sequence in C++, without a Python object per sequence.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "common/dtype.hpp"
#include "source/series.hpp"

namespace fastfeed::python {

namespace py = pybind11;

class RaggedView {
 public:
  // `values`: a non-empty list of C-contiguous, aligned NumPy arrays (1-D, or (N, *feat)) or
  // opened NpyFiles, all of one dtype and feature shape; `chunk`, `begin` and `end`: 1-D integer
  // arrays of one length. Throws ArgumentError (ValueError) naming the array and the numbers for
  // anything else, and for a chunk or row range outside its array.
  RaggedView(const py::list& values, const py::array& chunk, const py::array& begin, const py::array& end);

  int64_t count() const { return static_cast<int64_t>(chunk_.size()); }
  DType dtype() const { return dtype_; }
  int64_t row_elems() const { return row_elems_; }
  const std::vector<int64_t>& feat() const { return feat_; }
  const py::list& values() const { return values_; }
  int64_t num_steps() const;  // steps of all sequences together

  // The sequences' lengths (end - begin), and their chunk, begin and end as given (int64).
  py::array_t<int64_t> lengths() const;
  py::array_t<int64_t> chunk() const;
  py::array_t<int64_t> begin() const { return as_array(begin_); }
  py::array_t<int64_t> end() const { return as_array(end_); }

  // Appends sequence i (in place, no copy) for every i, in order.
  void append_series(std::vector<Series>* out) const;

  // Random-access advice for the memory maps among the values (NpyFiles).
  void advise_random_access(bool random) const;

 private:
  struct Chunk {
    const std::byte* data = nullptr;
    int64_t rows = 0;
    std::shared_ptr<const MappedFile> file;  // for an NpyFile: keeps its map alive, guarded
  };
  static py::array_t<int64_t> as_array(const std::vector<int64_t>& v);

  py::list values_;  // the owners of the memory the series point into
  std::vector<Chunk> chunks_;
  std::vector<int32_t> chunk_;
  std::vector<int64_t> begin_, end_;
  DType dtype_ = DType::Float32;
  int64_t row_elems_ = 1;
  std::vector<int64_t> feat_;
};

void bind_ragged_view(py::module_& m);

}  // namespace fastfeed::python
