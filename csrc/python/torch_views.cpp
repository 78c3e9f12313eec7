// fastfeed._torch_views: the rows of a torch tensor as tensors of their own, made without
// torch's dispatcher.
//
// An epoch of tiny batches (W1: 990 batches of one window) is mostly the making of views: two
// per batch. torch's cheapest way, one unbind() per chunk below autograd's view tracking, costs
// about 0.4 us a view; building each view's TensorImpl directly over the same storage, as
// torch's own alias_with_sizes_and_strides() does, and wrapping it costs less than half that.
// The views are ordinary tensors: they share the block's storage (and so keep it alive), carry
// its dtype, device and dispatch keys, and are not autograd views, just as unbind() makes them
// under the guard views.py uses when this module is missing.
//
// This is the one file that compiles against torch's C++ headers. It is built only where the
// build can import torch (CMakeLists.txt), and views.py uses it only under the exact torch
// version it was built with: the TensorImpl layout is not a stable ABI.
#include <Python.h>

#include <c10/core/TensorImpl.h>
#include <torch/csrc/autograd/python_variable.h>

#include <cstdint>
#include <exception>

#ifndef FASTFEED_TORCH_VERSION
#error "FASTFEED_TORCH_VERSION (the torch version built against) must be defined"
#endif

namespace {

// Refuses what a plain view of storage would get wrong: subclasses and tensors that Python
// dispatch or autograd must see, and layouts without strided rows.
const char* why_not_viewable(PyObject* obj, const at::Tensor& t) {
  if (!THPVariable_CheckExact(obj)) return "a torch.Tensor (not a subclass)";
  if (t.layout() != c10::kStrided) return "a strided tensor";
  if (t.dim() < 1) return "a tensor of at least one dimension";
  if (t.requires_grad()) return "a tensor that does not require grad";
  if (t.key_set().has_any(c10::python_ks)) return "a tensor without Python dispatch";
  return nullptr;
}

// The tensor t[i]: t's storage, sizes and strides without the first, offset by i rows.
at::Tensor row_view(const at::Tensor& t, int64_t i) {
  auto impl = c10::make_intrusive<c10::TensorImpl>(c10::TensorImpl::VIEW, c10::Storage(t.storage()),
                                                   t.key_set(), t.dtype());
  impl->set_sizes_and_strides(t.sizes().slice(1), t.strides().slice(1),
                              t.storage_offset() + i * t.stride(0));
  return at::Tensor(std::move(impl));
}

// rows(t, start, stop) -> [t[start], ..., t[stop - 1]]
PyObject* rows(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 3) {
    PyErr_Format(PyExc_TypeError, "rows(tensor, start, stop) takes 3 arguments, got %zd", nargs);
    return nullptr;
  }
  if (!THPVariable_Check(args[0])) {
    PyErr_Format(PyExc_TypeError, "rows: expected a torch.Tensor, got %s", Py_TYPE(args[0])->tp_name);
    return nullptr;
  }
  const Py_ssize_t start = PyLong_AsSsize_t(args[1]);
  if (start == -1 && PyErr_Occurred()) return nullptr;
  const Py_ssize_t stop = PyLong_AsSsize_t(args[2]);
  if (stop == -1 && PyErr_Occurred()) return nullptr;
  try {
    const at::Tensor& t = THPVariable_Unpack(args[0]);
    if (const char* needed = why_not_viewable(args[0], t)) {
      PyErr_Format(PyExc_ValueError, "rows: expected %s", needed);
      return nullptr;
    }
    if (start < 0 || stop < start || stop > t.size(0)) {
      PyErr_Format(PyExc_IndexError, "rows: [%zd, %zd) is not a range of the tensor's %lld rows", start,
                   stop, static_cast<long long>(t.size(0)));
      return nullptr;
    }
    PyObject* out = PyList_New(stop - start);
    if (out == nullptr) return nullptr;
    for (Py_ssize_t i = start; i < stop; ++i) {
      PyObject* view = THPVariable_Wrap(row_view(t, i));
      if (view == nullptr) {
        Py_DECREF(out);
        return nullptr;
      }
      PyList_SET_ITEM(out, i - start, view);
    }
    return out;
  } catch (const std::exception& e) {  // torch's checks throw c10::Error
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
}

PyMethodDef methods[] = {
    {"rows", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(rows)), METH_FASTCALL,
     "rows(tensor, start, stop) -> list of the tensors tensor[start], ..., tensor[stop - 1]"},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_torch_views",
                      "Row views of torch tensors made without the dispatcher (see views.py).", -1,
                      methods, nullptr, nullptr, nullptr, nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__torch_views() {
  PyObject* m = PyModule_Create(&module);
  if (m != nullptr && PyModule_AddStringConstant(m, "TORCH_VERSION", FASTFEED_TORCH_VERSION) < 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
