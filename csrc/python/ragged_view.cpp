#include "python/ragged_view.hpp"

#include <pybind11/stl.h>

#include <string>

#include "common/errors.hpp"
#include "python/arrays.hpp"
#include "source/npy.hpp"

namespace fastfeed::python {

namespace {

std::string shape_text(const std::vector<int64_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

// A 1-D integer array as int64 values; `name` is the argument, for the message.
std::vector<int64_t> index_array(const py::array& a, const char* name) {
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u') {
    throw ArgumentError(std::string("Ragged: ") + name + " must be an integer array, got dtype " +
                        std::string(py::str(a.dtype())));
  }
  if (a.ndim() != 1) {
    throw ArgumentError(std::string("Ragged: ") + name + " must be 1-D, got " + std::to_string(a.ndim()) +
                        " dimensions");
  }
  if (kind == 'u' && a.itemsize() == 8) {  // uint64 past INT64_MAX would wrap round: refuse it by value
    auto u = py::array_t<uint64_t, py::array::forcecast>::ensure(a);
    auto r = u.unchecked<1>();
    for (py::ssize_t i = 0; i < r.shape(0); ++i) {
      if (r(i) > static_cast<uint64_t>(INT64_MAX)) {
        throw ArgumentError(std::string("Ragged: ") + name + "[" + std::to_string(i) + "] = " +
                            std::to_string(r(i)) + " is out of range");
      }
    }
  }
  auto c = py::array_t<int64_t, py::array::forcecast>::ensure(a);
  if (!c) throw py::error_already_set();
  auto r = c.unchecked<1>();
  std::vector<int64_t> out(static_cast<size_t>(r.shape(0)));
  for (py::ssize_t i = 0; i < r.shape(0); ++i) out[static_cast<size_t>(i)] = r(i);
  return out;
}

}  // namespace

RaggedView::RaggedView(const py::list& values, const py::array& chunk, const py::array& begin,
                       const py::array& end)
    : values_(values) {
  if (values.empty()) throw ArgumentError("Ragged: values is empty; pass at least one array");
  for (size_t k = 0; k < values.size(); ++k) {
    const py::handle item = values[k];
    const std::string label = "Ragged: values[" + std::to_string(k) + "]";
    Chunk c;
    DType dt;
    std::vector<int64_t> feat;
    if (py::isinstance<NpyFile>(item)) {
      const auto& f = item.cast<const NpyFile&>();
      if (f.header.shape.empty()) throw ArgumentError(label + " is a 0-d array; it needs rows");
      c.data = f.values();
      c.rows = f.header.shape[0];
      c.file = f.file;
      dt = f.header.dtype;
      feat.assign(f.header.shape.begin() + 1, f.header.shape.end());
    } else if (py::isinstance<py::array>(item)) {
      auto arr = py::reinterpret_borrow<py::array>(item);
      DType t;
      if (!dtype_from_kind(arr.dtype().kind(), static_cast<size_t>(arr.dtype().itemsize()), &t) ||
          arr.dtype().byteorder() == '>') {
        throw ArgumentError(label + " has unsupported dtype " + std::string(py::str(arr.dtype())));
      }
      if (arr.ndim() < 1) throw ArgumentError(label + " is a 0-d array; it needs rows");
      if (!(arr.flags() & py::array::c_style)) throw ArgumentError(label + " must be C-contiguous");
      if (reinterpret_cast<uintptr_t>(arr.data()) % itemsize(t) != 0) {
        throw ArgumentError(label + " is not aligned to its " + std::to_string(itemsize(t)) + "-byte elements");
      }
      c.data = static_cast<const std::byte*>(arr.data());
      c.rows = arr.shape(0);
      dt = t;
      for (py::ssize_t i = 1; i < arr.ndim(); ++i) feat.push_back(arr.shape(i));
    } else {
      throw ArgumentError(label + " must be a NumPy array, not " +
                          std::string(py::str(py::type::handle_of(item).attr("__name__"))));
    }
    if (k == 0) {
      dtype_ = dt;
      feat_ = feat;
      for (int64_t d : feat_) row_elems_ *= d;
    } else if (dt != dtype_) {
      throw ArgumentError(label + " has dtype " + std::string(dtype_name(dt)) + ", but values[0] has " +
                          std::string(dtype_name(dtype_)) + "; all chunks must share one dtype");
    } else if (feat != feat_) {
      throw ArgumentError(label + " has feature shape " + shape_text(feat) + ", but values[0] has " +
                          shape_text(feat_) + "; all chunks must share one feature shape");
    }
    chunks_.push_back(std::move(c));
  }

  std::vector<int64_t> ch = index_array(chunk, "chunk");
  begin_ = index_array(begin, "begin");
  end_ = index_array(end, "end");
  if (ch.size() != begin_.size() || ch.size() != end_.size()) {
    throw ArgumentError("Ragged: chunk, begin and end must have one length, got " + std::to_string(ch.size()) +
                        ", " + std::to_string(begin_.size()) + " and " + std::to_string(end_.size()));
  }
  chunk_.resize(ch.size());
  const auto num_chunks = static_cast<int64_t>(chunks_.size());
  for (size_t i = 0; i < ch.size(); ++i) {
    if (ch[i] < 0 || ch[i] >= num_chunks) {
      throw ArgumentError("Ragged: chunk[" + std::to_string(i) + "] = " + std::to_string(ch[i]) + " is not a chunk (there are " +
                          std::to_string(num_chunks) + ")");
    }
    chunk_[i] = static_cast<int32_t>(ch[i]);
    const int64_t rows = chunks_[static_cast<size_t>(ch[i])].rows;
    if (begin_[i] < 0 || begin_[i] > end_[i] || end_[i] > rows) {
      throw ArgumentError("Ragged: sequence " + std::to_string(i) + " has begin " + std::to_string(begin_[i]) +
                          " and end " + std::to_string(end_[i]) + ", but needs 0 <= begin <= end <= " +
                          std::to_string(rows) + " (the rows of values[" + std::to_string(ch[i]) + "])");
    }
  }
}

int64_t RaggedView::num_steps() const {
  int64_t n = 0;
  for (size_t i = 0; i < begin_.size(); ++i) n += end_[i] - begin_[i];
  return n;
}

py::array_t<int64_t> RaggedView::as_array(const std::vector<int64_t>& v) {
  return py::array_t<int64_t>(static_cast<py::ssize_t>(v.size()), v.data());
}

py::array_t<int64_t> RaggedView::chunk() const {
  py::array_t<int64_t> out(static_cast<py::ssize_t>(chunk_.size()));
  auto o = out.mutable_unchecked<1>();
  for (size_t i = 0; i < chunk_.size(); ++i) o(static_cast<py::ssize_t>(i)) = chunk_[i];
  return out;
}

py::array_t<int64_t> RaggedView::lengths() const {
  py::array_t<int64_t> out(static_cast<py::ssize_t>(begin_.size()));
  auto o = out.mutable_unchecked<1>();
  for (size_t i = 0; i < begin_.size(); ++i) o(static_cast<py::ssize_t>(i)) = end_[i] - begin_[i];
  return out;
}

void RaggedView::append_series(std::vector<Series>* out) const {
  out->reserve(out->size() + chunk_.size());
  const size_t row_bytes = static_cast<size_t>(row_elems_) * itemsize(dtype_);
  for (size_t i = 0; i < chunk_.size(); ++i) {
    const Chunk& c = chunks_[static_cast<size_t>(chunk_[i])];
    Series s;
    s.data = c.data + static_cast<size_t>(begin_[i]) * row_bytes;
    s.length = end_[i] - begin_[i];
    s.row_elems = row_elems_;
    s.dtype = dtype_;
    s.file = c.file;
    out->push_back(std::move(s));
  }
}

void RaggedView::advise_random_access(bool random) const {
  for (const Chunk& c : chunks_) {
    if (c.file) c.file->advise_random_access(random);
  }
}

void bind_ragged_view(py::module_& m) {
  py::class_<RaggedView, std::shared_ptr<RaggedView>>(m, "Ragged")
      .def(py::init<const py::list&, const py::array&, const py::array&, const py::array&>(), py::arg("values"),
           py::arg("chunk"), py::arg("begin"), py::arg("end"))
      .def_property_readonly("count", &RaggedView::count)
      .def_property_readonly("num_steps", &RaggedView::num_steps)
      .def_property_readonly("dtype", [](const RaggedView& r) { return std::string(dtype_name(r.dtype())); })
      .def_property_readonly("feat", [](const RaggedView& r) {
        py::tuple t(r.feat().size());
        for (size_t i = 0; i < r.feat().size(); ++i) t[i] = r.feat()[i];
        return t;
      })
      .def_property_readonly("row_elems", &RaggedView::row_elems)
      .def_property_readonly("values", [](const RaggedView& r) { return py::list(r.values()); })
      .def_property_readonly("chunk", &RaggedView::chunk)
      .def_property_readonly("begin", &RaggedView::begin)
      .def_property_readonly("end", &RaggedView::end)
      .def("lengths", &RaggedView::lengths)
      .def("advise_random_access", &RaggedView::advise_random_access, py::arg("random"));
}

}  // namespace fastfeed::python
