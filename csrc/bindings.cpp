// The Python face of the core: converts types, releases the GIL, maps errors. No logic here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "assembler.hpp"
#include "errors.hpp"
#include "moments.hpp"
#include "npy.hpp"
#include "permutation.hpp"
#include "pipeline.hpp"
#include "ragged_file.hpp"

namespace py = pybind11;
using namespace fastfeed;

namespace {

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

// A NumPy array or an opened .npy file, as the core's Series. Python keeps arrays alive.
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

// Arrays and .npy files are one series each; a RaggedFile (a dataset's values) is all its sequences.
std::vector<Series> to_series_list(const py::list& items) {
  std::vector<Series> out;
  out.reserve(items.size());
  for (const auto& item : items) {
    if (py::isinstance<RaggedFile>(item)) {
      const auto& r = item.cast<const RaggedFile&>();
      for (int64_t i = 0; i < r.count(); ++i) out.push_back(r.sequence(i));
    } else {
      out.push_back(to_series(item));
    }
  }
  return out;
}

// Hands a pooled buffer to NumPy: the array's base owns a reference, and the buffer goes
// back to the pool only when the last array (or tensor sharing it) is gone.
py::array wrap_buffer(const std::shared_ptr<std::byte>& buf, const py::dtype& dtype,
                      std::vector<py::ssize_t> shape) {
  auto* owner = new std::shared_ptr<std::byte>(buf);
  py::capsule base(owner, [](void* p) { delete static_cast<std::shared_ptr<std::byte>*>(p); });
  return py::array(dtype, std::move(shape), buf.get(), base);
}

// Pipeline plus what Python needs to shape its buffers.
struct PyPipeline {
  std::unique_ptr<Pipeline> pipeline;
  py::dtype x_dtype, y_dtype;
  std::vector<py::ssize_t> x_tail, y_tail;

  py::object next() {
    Block block;
    for (;;) {
      Pipeline::Status status;
      {
        py::gil_scoped_release nogil;
        status = pipeline->next(&block, std::chrono::milliseconds(50));
      }
      if (status == Pipeline::Status::Finished) return py::none();
      if (status == Pipeline::Status::Ready) break;
      // Waiting in short slices keeps Ctrl-C responsive.
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    }
    const int64_t valid = block.failed_at >= 0 ? block.failed_at : block.num_samples;
    auto shape_of = [valid](const std::vector<py::ssize_t>& tail) {
      std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(valid)};
      shape.insert(shape.end(), tail.begin(), tail.end());
      return shape;
    };
    py::object x = wrap_buffer(block.x, x_dtype, shape_of(x_tail));
    py::object y = block.y ? py::object(wrap_buffer(block.y, y_dtype, shape_of(y_tail))) : py::none();
    py::object error = block.failed_at >= 0 ? py::object(py::str(block.error)) : py::none();
    return py::make_tuple(x, y, block.first_batch, block.num_batches, error);
  }

  void close() {
    py::gil_scoped_release nogil;
    pipeline->close();
  }
};

Normalization to_normalization(const std::vector<double>& mean, const std::vector<double>& std) {
  Normalization n;
  n.mean = mean;
  n.std = std;
  return n;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastfeed's native core (private: use the fastfeed package)";

  static py::exception<FormatError> format_error(m, "FormatError", PyExc_ValueError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const FormatError& e) {
      py::set_error(format_error, e.what());
    } catch (const ArgumentError& e) {
      py::set_error(PyExc_ValueError, e.what());
    }
  });

  py::class_<NpyFile>(m, "NpyFile")
      .def_static("open", &NpyFile::open, py::arg("path"), py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("dtype", [](const NpyFile& f) { return dtype_name(f.header.dtype); })
      .def_property_readonly("shape", [](const NpyFile& f) {
        py::tuple t(f.header.shape.size());
        for (size_t i = 0; i < f.header.shape.size(); ++i) t[i] = f.header.shape[i];
        return t;
      })
      .def_property_readonly("path", [](const NpyFile& f) { return f.file->path(); })
      .def_property_readonly("data_offset", [](const NpyFile& f) { return f.header.data_offset; })
      .def("advise_random_access", [](const NpyFile& f, bool random) { f.file->advise_random_access(random); },
           py::arg("random"));

  // Held by shared_ptr<RaggedFile>: pybind11 holders cannot be pointers to const. Every method
  // of RaggedFile is const, so nothing can change it through the holder.
  py::class_<RaggedFile, std::shared_ptr<RaggedFile>>(m, "RaggedFile")
      .def_static("open",
                  [](const std::string& values_path, const std::string& offsets_path, int64_t count,
                     int64_t num_steps, const std::string& dtype, int64_t row_elems) {
                    return std::const_pointer_cast<RaggedFile>(RaggedFile::open(
                        values_path, offsets_path, count, num_steps, dtype_named(dtype), row_elems));
                  },
                  py::arg("values_path"), py::arg("offsets_path"), py::arg("count"), py::arg("num_steps"),
                  py::arg("dtype"), py::arg("row_elems"), py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("count", &RaggedFile::count)
      .def_property_readonly("num_steps", &RaggedFile::num_steps)
      .def_property_readonly("dtype", [](const RaggedFile& r) { return dtype_name(r.dtype()); })
      .def_property_readonly("row_elems", &RaggedFile::row_elems)
      .def_property_readonly("values_path", &RaggedFile::values_path)
      .def_property_readonly("offsets_path", &RaggedFile::offsets_path)
      .def("lengths", [](const RaggedFile& r) {
        std::vector<int64_t> v = r.lengths();
        return py::array_t<int64_t>(static_cast<py::ssize_t>(v.size()), v.data());
      })
      .def("advise_random_access", &RaggedFile::advise_random_access, py::arg("random"));

  py::class_<Assembler, std::shared_ptr<Assembler>>(m, "Assembler")
      .def(py::init([](const py::list& inputs, const py::list& targets, int64_t window,
                       int64_t sampling_rate, int64_t stride, int64_t horizon,
                       int64_t start_index, int64_t end_index, const std::string& x_dtype,
                       const std::string& y_dtype, const std::vector<double>& x_mean,
                       const std::vector<double>& x_std, const std::vector<double>& y_mean,
                       const std::vector<double>& y_std, bool check_finite) {
             WindowSpec spec{window, sampling_rate, stride, horizon, start_index, end_index};
             OutputSpec out;
             out.x_dtype = dtype_named(x_dtype);
             out.y_dtype = dtype_named(y_dtype);
             out.x_norm = to_normalization(x_mean, x_std);
             out.y_norm = to_normalization(y_mean, y_std);
             out.check_finite = check_finite;
             return std::make_shared<Assembler>(to_series_list(inputs), to_series_list(targets),
                                                spec, std::move(out));
           }),
           py::arg("inputs"), py::arg("targets"), py::arg("window"), py::arg("sampling_rate"),
           py::arg("stride"), py::arg("horizon"), py::arg("start_index"), py::arg("end_index"),
           py::arg("x_dtype"), py::arg("y_dtype"), py::arg("x_mean"), py::arg("x_std"),
           py::arg("y_mean"), py::arg("y_std"), py::arg("check_finite") = false)
      .def_property_readonly("num_samples", &Assembler::num_samples);

  py::class_<PyPipeline>(m, "Pipeline")
      .def(py::init([](std::shared_ptr<Assembler> assembler, bool shuffle, uint64_t seed,
                       uint64_t epoch, int64_t batch_size, int64_t first_batch, int64_t end_batch,
                       int64_t batches_per_block, int num_threads, int prefetch,
                       py::dtype x_dtype, std::vector<py::ssize_t> x_tail, py::dtype y_dtype,
                       std::vector<py::ssize_t> y_tail) {
             PipelineConfig config{batch_size, first_batch, end_batch, batches_per_block,
                                   num_threads, prefetch};
             EpochOrder order(assembler->num_samples(), shuffle, seed, epoch);
             auto p = std::make_unique<PyPipeline>();
             p->pipeline = std::make_unique<Pipeline>(assembler, order, config);
             p->x_dtype = std::move(x_dtype);
             p->y_dtype = std::move(y_dtype);
             p->x_tail = std::move(x_tail);
             p->y_tail = std::move(y_tail);
             return p;
           }),
           py::arg("assembler"), py::arg("shuffle"), py::arg("seed"), py::arg("epoch"),
           py::arg("batch_size"), py::arg("first_batch"), py::arg("end_batch"),
           py::arg("batches_per_block"), py::arg("num_threads"), py::arg("prefetch"),
           py::arg("x_dtype"), py::arg("x_tail"), py::arg("y_dtype"), py::arg("y_tail"))
      .def("next", &PyPipeline::next)
      .def("close", &PyPipeline::close);

  m.def("permutation",
        [](uint64_t n, uint64_t seed, uint64_t epoch, const py::array_t<int64_t>& positions) {
          Permutation perm(n, seed, epoch);
          py::array_t<int64_t> out(positions.size());
          auto in = positions.unchecked<1>();
          auto o = out.mutable_unchecked<1>();
          for (py::ssize_t i = 0; i < in.shape(0); ++i) {
            o(i) = static_cast<int64_t>(perm(static_cast<uint64_t>(in(i))));
          }
          return out;
        },
        py::arg("n"), py::arg("seed"), py::arg("epoch"), py::arg("positions"),
        "Shuffled sample numbers at `positions` of an epoch over n samples.");

  m.def("moments",
        [](const py::list& series, int64_t start, int64_t end) {
          std::vector<Series> s = to_series_list(series);
          Moments mo;
          {
            py::gil_scoped_release nogil;
            mo = compute_moments(s, start, end);
          }
          return py::make_tuple(mo.mean, mo.std, mo.count);
        },
        py::arg("series"), py::arg("start"), py::arg("end"),
        "Per-element (mean, std, count) over steps [start, end) of every series.");

  m.def("gather_windows",
        [](const py::object& source, const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& starts,
           int64_t window, int64_t rate, py::dtype out_dtype, std::vector<py::ssize_t> tail) {
          Series s = to_series(source);
          py::ssize_t tail_elems = 1;
          for (py::ssize_t d : tail) tail_elems *= d;
          if (tail_elems != window * s.row_elems) {
            throw ArgumentError("gather_windows: tail holds " + std::to_string(tail_elems) +
                                " elements but a window has " + std::to_string(window * s.row_elems));
          }
          std::vector<py::ssize_t> shape{starts.size()};
          shape.insert(shape.end(), tail.begin(), tail.end());
          py::array out(out_dtype, shape);
          gather_windows(s, starts.data(), starts.size(), window, rate,
                         static_cast<std::byte*>(out.mutable_data()), dtype_of(out_dtype));
          return out;
        },
        py::arg("source"), py::arg("starts"), py::arg("window"), py::arg("rate"),
        py::arg("out_dtype"), py::arg("tail"),
        "Windows of `window` steps every `rate` steps from each of `starts`, as one new array "
        "of shape (len(starts), *tail); raises ValueError for a window outside the series.");

}
