// The Python face of the core: converts types, releases the GIL, maps errors. No logic here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "assembler.hpp"
#include "cuda/cuda_runtime.hpp"
#include "cuda/uploader.hpp"
#include "cuda/device_gather.hpp"
#include "errors.hpp"
#include "fingerprint.hpp"
#include "finite.hpp"
#include "moments.hpp"
#include "npy.hpp"
#include "permutation.hpp"
#include "pipeline.hpp"
#include "sequence_blocks.hpp"
#include "window_blocks.hpp"
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

// NumPy's name for the storage of a core dtype (bfloat16 travels as uint16 bit patterns).
py::dtype numpy_dtype(DType t) {
  return py::dtype(t == DType::BFloat16 ? std::string("uint16") : std::string(dtype_name(t)));
}

// Hands a pooled buffer to NumPy: the array's base owns a reference, and the buffer goes
// back to the pool only when the last array (or tensor sharing it) is gone.
py::object wrap_array(const Array& a, int64_t rows) {
  if (!a) return py::none();
  auto* owner = new std::shared_ptr<std::byte>(a.data);
  py::capsule base(owner, [](void* p) { delete static_cast<std::shared_ptr<std::byte>*>(p); });
  std::vector<py::ssize_t> shape(a.shape.begin(), a.shape.end());
  if (rows >= 0 && !shape.empty()) shape[0] = static_cast<py::ssize_t>(rows);
  return py::array(numpy_dtype(a.dtype), std::move(shape), a.data.get(), base);
}

// Pipeline plus the waiting loop that keeps Ctrl-C working.
struct PyPipeline {
  std::unique_ptr<Pipeline> pipeline;

  // (arrays, first_batch, num_batches, error, build_seconds, queued): arrays in Output order, None where absent;
  // after a failure the row-indexed arrays hold only the rows before the failed sample.
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
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    }
    const int64_t rows = block.failed_at;  // -1: every row is valid
    py::tuple arrays(block.arrays.size());
    for (size_t i = 0; i < block.arrays.size(); ++i) {
      const bool per_row = static_cast<Output>(i) != Output::CuSeqlens;
      arrays[i] = wrap_array(block.arrays[i], per_row ? rows : -1);
    }
    py::object error = block.failed_at >= 0 ? py::object(py::str(block.error)) : py::none();
    return py::make_tuple(arrays, block.first_batch, block.num_batches, error, block.build_seconds, block.queued);
  }

  void close() {
    py::gil_scoped_release nogil;
    pipeline->close();
  }
};

std::unique_ptr<PyPipeline> start_pipeline(std::shared_ptr<const BlockBuilder> builder, int num_threads,
                                           int prefetch) {
  auto p = std::make_unique<PyPipeline>();
  p->pipeline = std::make_unique<Pipeline>(std::move(builder), num_threads, prefetch);
  return p;
}

Normalization to_normalization(const std::vector<double>& mean, const std::vector<double>& std) {
  Normalization n;
  n.mean = mean;
  n.std = std;
  return n;
}

// Buffers a pool keeps for reuse: one per prefetch slot, plus those the consumer holds. Pinned
// ones also cover the blocks whose uploads are still running (device.py keeps up to 4 in
// flight): pinning and unpinning memory costs milliseconds and stalls the GPU's copies.
size_t idle_buffers(int prefetch, bool pinned) { return static_cast<size_t>(prefetch) + (pinned ? 8 : 2); }

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

// Instances of a tuple subclass (fastfeed.Batch) holding (xs[i], ys[i]), made without a
// Python call each: for batches of one sample, making the pairs in Python cost a fifth of
// the whole epoch.
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
      .def_property_readonly("num_samples", &Assembler::num_samples)
      .def_property_readonly("num_excluded", &Assembler::num_excluded)
      .def("files_changed", [](const Assembler& a) { return a.files().check_now(); },
           py::call_guard<py::gil_scoped_release>(),
           "What happened to a mapped source file since it was mapped (gone, replaced, shrunk), or ''.")
      .def("exclude_touching", &Assembler::exclude_touching, py::arg("bad_inputs"), py::arg("bad_targets"),
           "Drops the samples touching the given steps (per series); call before any Pipeline uses it.");

  py::class_<SequenceData, std::shared_ptr<SequenceData>>(m, "Sequences")
      .def(py::init([](const py::list& inputs, const py::list& step_targets, const py::object& labels,
                       std::vector<int64_t> keep) {
             auto d = std::make_shared<SequenceData>();
             d->inputs = to_series_list(inputs);
             d->step_targets = to_series_list(step_targets);
             if (!labels.is_none()) d->labels = to_series(labels);
             for (int64_t k : keep) {
               if (k < 0 || k >= static_cast<int64_t>(d->inputs.size())) throw ArgumentError("keep: no sequence " + std::to_string(k));
             }
             d->keep = std::move(keep);
             std::vector<std::shared_ptr<const MappedFile>> files;
             for (const auto* list : {&d->inputs, &d->step_targets}) {
               for (const auto& f : files_of(*list)) files.push_back(f);
             }
             if (d->labels.file) files.push_back(d->labels.file);
             d->watch = FileWatch(std::move(files));
             return d;
           }),
           py::arg("inputs"), py::arg("step_targets"), py::arg("labels"), py::arg("keep") = std::vector<int64_t>{})
      .def("files_changed", [](const SequenceData& d) { return d.watch.check_now(); },
           py::call_guard<py::gil_scoped_release>(),
           "What happened to a mapped source file since it was mapped (gone, replaced, shrunk), or ''.");

  py::class_<PyPipeline>(m, "Pipeline")
      .def_static(
          "windows",
          [](std::shared_ptr<Assembler> assembler, bool shuffle, uint64_t seed, int64_t rank, int64_t world,
             bool drop_last, int64_t batch_size, int64_t epoch, int64_t first_batch, int64_t end_batch,
             int64_t steps_per_epoch, int64_t batches_per_block, std::vector<int64_t> x_feat,
             std::vector<int64_t> y_feat, int num_threads, int prefetch, bool pinned, bool starts_only) {
            ShareSpec share{assembler->num_samples(), shuffle, seed, rank, world, drop_last, batch_size};
            RunSpec run{batch_size, epoch, first_batch, end_batch, steps_per_epoch, batches_per_block};
            auto builder = std::make_shared<WindowBlocks>(assembler, share, run, std::move(x_feat),
                                                          std::move(y_feat), idle_buffers(prefetch, pinned), pinned,
                                                          starts_only);
            return start_pipeline(std::move(builder), num_threads, prefetch);
          },
          py::arg("assembler"), py::arg("shuffle"), py::arg("seed"), py::arg("rank"), py::arg("world"),
          py::arg("drop_last"), py::arg("batch_size"), py::arg("epoch"), py::arg("first_batch"), py::arg("end_batch"),
          py::arg("steps_per_epoch"), py::arg("batches_per_block"), py::arg("x_feat"), py::arg("y_feat"),
          py::arg("num_threads"), py::arg("prefetch"), py::arg("pinned") = false, py::arg("starts_only") = false)
      .def_static(
          "sequences",
          [](std::shared_ptr<SequenceData> data, int64_t batch_size, bool shuffle, uint64_t seed, bool drop_last,
             bool bucket, int64_t bucket_pool, bool pack, int64_t max_len, int64_t pad_multiple, bool pad_left,
             bool truncate_left, double pad_value, const std::string& x_dtype, const std::string& y_dtype,
             const std::vector<double>& x_mean, const std::vector<double>& x_std, bool check_finite,
             std::vector<int64_t> x_feat, std::vector<int64_t> y_feat, int64_t rank, int64_t world, int64_t epoch,
             int64_t first_batch, int64_t end_batch, int64_t steps_per_epoch, int num_threads, int prefetch,
             bool pinned, bool pieces_only) {
            PlanSpec plan{batch_size, shuffle, seed, drop_last, bucket, bucket_pool, pack, max_len};
            PadSpec pad{max_len, pad_multiple, pad_left, truncate_left, pad_value};
            SequenceOutput out;
            out.x_dtype = dtype_named(x_dtype);
            out.y_dtype = dtype_named(y_dtype);
            out.x_norm = to_normalization(x_mean, x_std);
            out.check_finite = check_finite;
            out.x_feat = std::move(x_feat);
            out.y_feat = std::move(y_feat);
            out.pieces_only = pieces_only;
            RunSpec run{batch_size, epoch, first_batch, end_batch, steps_per_epoch, 1};
            std::shared_ptr<SequenceBlocks> builder;
            {
              py::gil_scoped_release nogil;  // the first pass's plan sorts every sequence
              builder = std::make_shared<SequenceBlocks>(data, plan, pad, std::move(out), rank, world, run,
                                                         idle_buffers(prefetch, pinned), pinned);
            }
            return start_pipeline(std::move(builder), num_threads, prefetch);
          },
          py::arg("data"), py::arg("batch_size"), py::arg("shuffle"), py::arg("seed"), py::arg("drop_last"),
          py::arg("bucket"), py::arg("bucket_pool"), py::arg("pack"), py::arg("max_len"), py::arg("pad_multiple"),
          py::arg("pad_left"), py::arg("truncate_left"), py::arg("pad_value"), py::arg("x_dtype"),
          py::arg("y_dtype"), py::arg("x_mean"), py::arg("x_std"), py::arg("check_finite"), py::arg("x_feat"),
          py::arg("y_feat"), py::arg("rank"), py::arg("world"), py::arg("epoch"), py::arg("first_batch"),
          py::arg("end_batch"), py::arg("steps_per_epoch"), py::arg("num_threads"), py::arg("prefetch"),
          py::arg("pinned") = false, py::arg("pieces_only") = false)
      .def("next", &PyPipeline::next)
      .def("close", &PyPipeline::close);

  m.def("rank_share_size", &rank_share_size, py::arg("n"), py::arg("rank"), py::arg("world"), py::arg("unit"),
        py::arg("drop_last"),
        "How many of a pass's n items (samples, sequences or packed rows, in batches of `unit`) a rank "
        "reads: disjoint shares, the same number of batches on every rank.");

  m.def("make_pairs", &make_pairs, py::arg("cls"), py::arg("xs"), py::arg("ys"),
        "A list of cls (a tuple subclass) instances, each holding (xs[i], ys[i]).");

  m.def("build_info", [] {
    py::dict d;
    d["cuda"] = cuda::compiled();
    d["cuda_runtime"] = cuda::runtime_version();
#ifdef FASTFEED_WITH_CUDA
    d["nvcc"] = FASTFEED_NVCC_VERSION;
    d["cuda_architectures"] = FASTFEED_CUDA_ARCHS;
#endif
    d["compiler"] = __VERSION__;
    d["cxx_standard"] = __cplusplus;
    d["build_type"] = FASTFEED_BUILD_TYPE;
    d["cxx_flags"] = FASTFEED_CXX_FLAGS;
    d["pybind11"] = std::to_string(PYBIND11_VERSION_MAJOR) + "." + std::to_string(PYBIND11_VERSION_MINOR) + "." +
                    std::to_string(PYBIND11_VERSION_PATCH);
    return d;
  }, "How the native core was built: CUDA support, compiler, flags.");

  m.def("cuda_device_count", &cuda::device_count,
        "Usable CUDA devices (0 without CUDA support, a driver or a GPU).");

  // Pointers and streams travel as integers (tensor.data_ptr(), stream.cuda_stream): the core
  // does not link PyTorch.
  py::class_<cuda::Uploader>(m, "CudaUploader")
      .def(py::init<int, uintptr_t>(), py::arg("device"), py::arg("stream"))
      .def(
          "upload",
          [](cuda::Uploader& u, const std::vector<std::tuple<uintptr_t, uintptr_t, size_t>>& copies,
             uintptr_t consumer) {
            std::vector<cuda::Copy> c;
            c.reserve(copies.size());
            for (const auto& [src, dst, bytes] : copies) {
              c.push_back({reinterpret_cast<const void*>(src), reinterpret_cast<void*>(dst), bytes});
            }
            py::gil_scoped_release nogil;
            return u.upload(c, consumer);
          },
          py::arg("copies"), py::arg("consumer"))
      .def("finished", &cuda::Uploader::finished)
      .def("wait", &cuda::Uploader::wait, py::arg("ticket"), py::call_guard<py::gil_scoped_release>())
      .def("synchronize", &cuda::Uploader::synchronize, py::call_guard<py::gil_scoped_release>());

  py::class_<cuda::DeviceGather>(m, "CudaGather")
      .def(py::init<int>(), py::arg("device"))
      .def(
          "gather_windows",
          [](cuda::DeviceGather& g, const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& starts,
             const std::vector<std::tuple<uintptr_t, uintptr_t, size_t, int64_t, int64_t, int64_t>>& parts,
             uintptr_t stream) {
            std::vector<cuda::RowGather> p;
            p.reserve(parts.size());
            for (const auto& [src, out, row_bytes, first, steps, stride] : parts) {
              p.push_back({reinterpret_cast<const void*>(src), reinterpret_cast<void*>(out), row_bytes, first, steps,
                           stride});
            }
            const int64_t* data = starts.data();
            const auto n = static_cast<size_t>(starts.size());
            py::gil_scoped_release nogil;
            g.gather_windows(data, n, p, stream);
          },
          py::arg("starts"), py::arg("parts"), py::arg("stream"))
      .def(
          "gather_pieces",
          [](cuda::DeviceGather& g, const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& pieces,
             uintptr_t seq_offsets,
             const std::vector<std::tuple<uintptr_t, uintptr_t, size_t, int64_t, uintptr_t, uintptr_t, uintptr_t>>& parts,
             uintptr_t stream) {
            if (pieces.ndim() != 2 || pieces.shape(1) != 6) throw ArgumentError("pieces must be an (n, 6) int64 array");
            std::vector<cuda::PieceGather> p;
            p.reserve(parts.size());
            for (const auto& [src, out, row_bytes, length, mask, segments, positions] : parts) {
              p.push_back({reinterpret_cast<const void*>(src), reinterpret_cast<void*>(out), row_bytes, length,
                           reinterpret_cast<bool*>(mask), reinterpret_cast<int32_t*>(segments),
                           reinterpret_cast<int64_t*>(positions)});
            }
            const int64_t* data = pieces.data();
            const auto n = static_cast<size_t>(pieces.shape(0));
            py::gil_scoped_release nogil;
            g.gather_pieces(data, n, reinterpret_cast<const int64_t*>(seq_offsets), p, stream);
          },
          py::arg("pieces"), py::arg("seq_offsets"), py::arg("parts"), py::arg("stream"));

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

  m.def("fingerprint",
        [](const py::list& series, int64_t rows, uint64_t full_bytes) {
          std::vector<Series> s = to_series_list(series);
          py::gil_scoped_release nogil;
          return fingerprint(s, rows, full_bytes);
        },
        py::arg("series"), py::arg("rows"), py::arg("full_bytes"),
        "A 64-bit hash of the series' lengths and values: all of them up to full_bytes bytes, "
        "else the first and last `rows` steps of the outer series.");

  m.def("non_finite_steps",
        [](const py::list& series, int threads) {
          std::vector<Series> s = to_series_list(series);
          std::vector<std::vector<int64_t>> bad;
          {
            py::gil_scoped_release nogil;
            bad = non_finite_steps(s, threads);
          }
          py::list out;
          for (const auto& v : bad) out.append(py::array_t<int64_t>(static_cast<py::ssize_t>(v.size()), v.data()));
          return out;
        },
        py::arg("series"), py::arg("threads"),
        "Per series, the steps holding a NaN or Inf (one parallel pass over the data).");

  m.def("moments",
        [](const py::list& series, int64_t start, int64_t end, bool finite_rows_only) {
          std::vector<Series> s = to_series_list(series);
          Moments mo;
          {
            py::gil_scoped_release nogil;
            mo = compute_moments(s, start, end, finite_rows_only);
          }
          return py::make_tuple(mo.mean, mo.std, mo.count);
        },
        py::arg("series"), py::arg("start"), py::arg("end"), py::arg("finite_rows_only") = false,
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
