// Batches as pairs: instances of a tuple subclass (fastfeed.Batch) made in C, not in Python.
#pragma once
#include <pybind11/pybind11.h>

namespace fastfeed::python {

namespace py = pybind11;

// Instances of a tuple subclass `cls` holding (xs[i], ys[i]), made without a Python call each:
// for batches of one sample, making the pairs in Python cost a fifth of the whole epoch.
py::list make_pairs(const py::type& cls, const py::list& xs, const py::sequence& ys);

}  // namespace fastfeed::python
