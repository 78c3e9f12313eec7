#include "python/arrays.hpp"

#include <memory>

#include "common/errors.hpp"
#include "source/npy.hpp"
#include "python/ragged_view.hpp"
#include "source/ragged_file.hpp"

namespace fastfeed::python {

DType dtype_of(const py::dtype& dt) {
  DType t;
  if (!dtype_from_kind(dt.kind(), static_cast<size_t>(dt.itemsize()), &t)) {
    throw ArgumentError("unsupported dtype " + std::string(py::str(dt)));
  }
  return t;
}

DType dtype_named(const std::string& name) {
  DType t;
  if (!dtype_from_name(name, &t)) throw ArgumentError("unknown dtype name '" + name + "'");
  return t;
}

py::dtype numpy_dtype(DType t) {
  return py::dtype(t == DType::BFloat16 ? std::string("uint16") : std::string(dtype_name(t)));
}

Series to_series(const py::handle& obj) {
  if (py::isinstance<NpyFile>(obj)) {
    const auto& f = obj.cast<const NpyFile&>();
    Series s;
    s.data = f.values();
    s.dtype = f.header.dtype;
    s.length = f.header.shape.empty() ? 0 : f.header.shape[0];
    for (size_t i = 1; i < f.header.shape.size(); ++i) s.row_elems *= f.header.shape[i];
    s.file = f.file;
    return s;
  }
  auto arr = py::reinterpret_borrow<py::array>(obj);
  if (arr.ndim() < 1) throw ArgumentError("a series needs at least one dimension");
  if (!(arr.flags() & py::array::c_style)) throw ArgumentError("a series must be C-contiguous");
  Series s;
  s.data = static_cast<const std::byte*>(arr.data());
  s.dtype = dtype_of(arr.dtype());
  s.length = arr.shape(0);
  for (py::ssize_t i = 1; i < arr.ndim(); ++i) s.row_elems *= arr.shape(i);
  return s;
}

std::vector<Series> to_series_list(const py::list& items) {
  std::vector<Series> out;
  out.reserve(items.size());
  for (const auto& item : items) {
    if (py::isinstance<RaggedFile>(item)) {
      const auto& r = item.cast<const RaggedFile&>();
      for (int64_t i = 0; i < r.count(); ++i) out.push_back(r.sequence(i));
    } else if (py::isinstance<RaggedView>(item)) {
      item.cast<const RaggedView&>().append_series(&out);
    } else {
      out.push_back(to_series(item));
    }
  }
  return out;
}

py::array wrap_array(const Array& a, int64_t rows) {
  auto* owner = new std::shared_ptr<std::byte>(a.data);
  py::capsule base(owner, [](void* p) { delete static_cast<std::shared_ptr<std::byte>*>(p); });
  std::vector<py::ssize_t> shape(a.shape.begin(), a.shape.end());
  if (rows >= 0 && !shape.empty()) shape[0] = static_cast<py::ssize_t>(rows);
  return py::array(numpy_dtype(a.dtype), std::move(shape), a.data.get(), base);
}

}  // namespace fastfeed::python
