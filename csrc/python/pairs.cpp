#include "python/pairs.hpp"

#include <string>

namespace fastfeed::python {

namespace {

// One instance of a tuple subclass holding (x, y); x and y are borrowed.
PyObject* new_pair(PyTypeObject* type, PyObject* x, PyObject* y, PyObject* args) {
#if PY_VERSION_HEX < 0x030E0000
  (void)args;
  // Up to 3.13 a tuple is its header and items: allocating the subclass directly skips the
  // intermediate (x, y) that tuple.__new__ would build and copy.
  PyObject* pair = type->tp_alloc(type, 2);
  if (pair == nullptr) return nullptr;
  Py_INCREF(x);
  Py_INCREF(y);
  PyTuple_SET_ITEM(pair, 0, x);
  PyTuple_SET_ITEM(pair, 1, y);
  return pair;
#else
  // 3.14 caches a tuple's hash in the object: only tuple.__new__ knows how to start it.
  PyObject* xy = PyTuple_Pack(2, x, y);
  if (xy == nullptr) return nullptr;
  py::reinterpret_steal<py::object>(PyTuple_GET_ITEM(args, 0));  // drops the last pair's (x, y)
  PyTuple_SET_ITEM(args, 0, xy);
  return PyTuple_Type.tp_new(type, args, nullptr);
#endif
}

}  // namespace

py::list make_pairs(const py::type& cls, const py::list& xs, const py::sequence& ys_in) {
  auto* type = reinterpret_cast<PyTypeObject*>(cls.ptr());
  if (!PyType_IsSubtype(type, &PyTuple_Type)) throw py::type_error("make_pairs: cls must be a tuple subclass");
  const auto ys = py::reinterpret_steal<py::object>(PySequence_Fast(ys_in.ptr(), "make_pairs: ys must be a sequence"));
  if (!ys) throw py::error_already_set();
  const py::ssize_t n = PyList_GET_SIZE(xs.ptr());
  if (PySequence_Fast_GET_SIZE(ys.ptr()) != n) {
    throw py::value_error("make_pairs: " + std::to_string(n) + " xs but " +
                          std::to_string(PySequence_Fast_GET_SIZE(ys.ptr())) + " ys");
  }
  py::list out(n);
  py::tuple args(1);  // tuple.__new__(cls, (x, y))'s arguments where that is the way (3.14+)
  for (py::ssize_t i = 0; i < n; ++i) {
    PyObject* pair = new_pair(type, PyList_GET_ITEM(xs.ptr(), i), PySequence_Fast_GET_ITEM(ys.ptr(), i), args.ptr());
    if (pair == nullptr) throw py::error_already_set();
    PyList_SET_ITEM(out.ptr(), i, pair);  // the list takes the reference
  }
  return out;
}

}  // namespace fastfeed::python
