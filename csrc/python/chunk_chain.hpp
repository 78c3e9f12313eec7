// The iterator over an epoch's batches that several threads may share (run/handout.py).
#pragma once
#include <pybind11/pybind11.h>

namespace fastfeed::python {

namespace py = pybind11;

// Adds `ChunkChain` to the module: itertools.chain.from_iterable over an iterator of chunks
// (iterators of batches), with no Python code run per batch, that one thread at a time advances.
void add_chunk_chain(py::module_& m);

}  // namespace fastfeed::python
