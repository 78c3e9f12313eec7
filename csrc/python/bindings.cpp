// The Python face of the core: converts types, releases the GIL, maps errors. No logic here:
// conversions live in arrays.hpp, the tuple trick in pairs.hpp, keyword specs in specs.hpp.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "common/errors.hpp"
#include "cuda/cuda_runtime.hpp"
#include "cuda/device_gather.hpp"
#include "cuda/uploader.hpp"
#include "order/epoch_sizes.hpp"
#include "order/order.hpp"
#include "order/permutation.hpp"
#include "pipeline/output_spec.hpp"
#include "pipeline/pipeline.hpp"
#include "pipeline/run_spec.hpp"
#include "python/arrays.hpp"
#include "python/chunk_chain.hpp"
#include "python/pairs.hpp"
#include "python/ragged_view.hpp"
#include "python/specs.hpp"
#include "sequences/sequence_blocks.hpp"
#include "sequences/sequence_data.hpp"
#include "source/fingerprint.hpp"
#include "source/finite.hpp"
#include "order/mix_order.hpp"
#include "source/moments.hpp"
#include "source/npy.hpp"
#include "source/ragged_file.hpp"
#include "windows/assembler.hpp"
#include "windows/window.hpp"
#include "windows/window_blocks.hpp"

namespace py = pybind11;
using namespace fastfeed;
using namespace fastfeed::python;

namespace {

// Pipeline plus the waiting loop that keeps Ctrl-C working.
struct PyPipeline {
  std::unique_ptr<Pipeline> pipeline;

  // (fields, num_samples, num_batches, error, build_seconds, queued, threads, prefetch): fields
  // a dict of the block's arrays by name, in the order the builder set them; after a failure
  // the per-row arrays hold only the rows before the failed sample, and num_samples counts
  // those rows; threads and prefetch are the pipeline's shape once the block was handed over.
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
    py::dict fields;
    for (const auto& [name, array] : block.fields) {
      if (array) fields[py::str(name)] = wrap_array(array, array.per_row ? rows : -1);
    }
    const bool failed = block.failed_at >= 0;
    py::object error = failed ? py::object(py::str(block.error)) : py::none();
    const int64_t samples = failed ? block.failed_at : block.num_samples;
    return py::make_tuple(fields, samples, block.num_batches, error, block.build_seconds, block.queued,
                          block.threads, block.prefetch);
  }

  std::pair<int, int> shape() const {
    const Shape s = pipeline->shape();
    return {s.threads, s.prefetch};
  }

  void retune(int threads, int prefetch) {
    require_arg(threads >= 1, "threads", ">= 1", threads);
    require_arg(prefetch >= 1, "prefetch", ">= 1", prefetch);
    pipeline->retune(Shape{threads, prefetch});
  }

  void close() {
    py::gil_scoped_release nogil;
    pipeline->close();
  }
};

std::unique_ptr<PyPipeline> start_pipeline(std::shared_ptr<const BlockBuilder> builder, const RunSpec& run) {
  auto p = std::make_unique<PyPipeline>();
  p->pipeline = std::make_unique<Pipeline>(std::move(builder), run.tune_limits(), run.start());
  return p;
}

// A DType field that Python reads and writes as its name ("float32", "bfloat16", ...).
template <class T>
void def_dtype(py::class_<T>& cls, const char* name, DType T::*field) {
  const std::string full = std::string(py::str(cls.attr("__name__"))) + "." + name;
  cls.def_property(
      name, [field](const T& s) { return std::string(dtype_name(s.*field)); },
      [field, full](T& s, const std::string& v) {
        DType t;
        if (!dtype_from_name(v, &t)) throw ArgumentError(full + ": unknown dtype name '" + v + "'");
        s.*field = t;
      });
}

// The mean and std of a Normalization field, as two list fields (empty: not normalised).
template <class T>
void def_normalization(py::class_<T>& cls, const char* mean, const char* std, Normalization T::*field) {
  cls.def_property(
      mean, [field](const T& s) { return (s.*field).mean; },
      [field](T& s, std::vector<double> v) { (s.*field).mean = std::move(v); });
  cls.def_property(
      std, [field](const T& s) { return (s.*field).std; },
      [field](T& s, std::vector<double> v) { (s.*field).std = std::move(v); });
}

void bind_specs(py::module_& m) {
  bind_spec<WindowSpec>(m, "WindowSpec")
      .def_readwrite("window", &WindowSpec::window)
      .def_readwrite("sampling_rate", &WindowSpec::sampling_rate)
      .def_readwrite("stride", &WindowSpec::stride)
      .def_readwrite("horizon", &WindowSpec::horizon)
      .def_readwrite("start_index", &WindowSpec::start_index)
      .def_readwrite("end_index", &WindowSpec::end_index)
      .def_readwrite("target_shift", &WindowSpec::target_shift)
      .def_property_readonly("span", &WindowSpec::span,
                             "Steps from a window's first input to its last target: (window - 1 + horizon or "
                             "target_shift) * sampling_rate + 1.");
  m.attr("SERIES_END") = kSeriesEnd;

  auto field_output = bind_spec<FieldOutput>(m, "FieldOutput");
  def_dtype(field_output, "dtype", &FieldOutput::dtype);
  def_normalization(field_output, "mean", "std", &FieldOutput::norm);
  field_output.def_readwrite("feat", &FieldOutput::feat);

  auto output = bind_spec<OutputSpec>(m, "OutputSpec");
  def_dtype(output, "x_dtype", &OutputSpec::x_dtype);
  def_dtype(output, "y_dtype", &OutputSpec::y_dtype);
  def_normalization(output, "x_mean", "x_std", &OutputSpec::x_norm);
  def_normalization(output, "y_mean", "y_std", &OutputSpec::y_norm);
  output.def_readwrite("x_feat", &OutputSpec::x_feat)
      .def_readwrite("y_feat", &OutputSpec::y_feat)
      .def_readwrite("check_finite", &OutputSpec::check_finite)
      .def_readwrite("mask_non_finite", &OutputSpec::mask_non_finite)
      .def_readwrite("with_index", &OutputSpec::with_index)
      .def_readwrite("static_output", &OutputSpec::static_out);

  bind_spec<MixSpec>(m, "MixSpec")
      .def_readwrite("weights", &MixSpec::weights)
      .def_readwrite("first", &MixSpec::first)
      .def_readwrite("count", &MixSpec::count)
      .def_readwrite("keys", &MixSpec::keys)
      .def_readwrite("origin", &MixSpec::origin)
      .def_readwrite("base", &MixSpec::base)
      .def_readwrite("first_series", &MixSpec::first_series)
      .def_readwrite("resume_item", &MixSpec::resume_item)
      .def_readwrite("resume_position", &MixSpec::resume_position)
      .def_readwrite("known_position", &MixSpec::known_position)
      .def_readwrite("known_counts", &MixSpec::known_counts);
  py::class_<MixOrder, std::shared_ptr<MixOrder>>(m, "MixOrder")
      .def(py::init([](const MixSpec& spec, bool shuffle) { return std::make_shared<MixOrder>(spec, shuffle); }),
           py::arg("spec"), py::arg("shuffle"))
      .def("counts_at", &MixOrder::counts_at, py::arg("position"), py::call_guard<py::gil_scoped_release>(),
           "Every component's items read before stream position `position` (over all ranks).")
      .def(
          "items",
          [](const MixOrder& mix, int64_t first, int64_t step, int64_t n) {
            require_arg(n >= 0, "n", ">= 0", n);
            require_arg(step >= 1, "step", ">= 1", step);
            py::array_t<int64_t> item(n), component(n);
            {
              py::gil_scoped_release nogil;
              mix.items(first, step, n, item.mutable_data(), component.mutable_data());
            }
            return py::make_tuple(item, component);
          },
          py::arg("first"), py::arg("step"), py::arg("n"),
          "(joint item, component) of stream positions first, first + step, ... (n of them).");

  bind_spec<OrderSpec>(m, "OrderSpec")
      .def_readwrite("shuffle", &OrderSpec::shuffle)
      .def_readwrite("seed", &OrderSpec::seed)
      .def_readwrite("rank", &OrderSpec::rank)
      .def_readwrite("world_size", &OrderSpec::world_size)
      .def_readwrite("batch_size", &OrderSpec::batch_size)
      .def_readwrite("drop_last", &OrderSpec::drop_last)
      .def_readwrite("steps_per_epoch", &OrderSpec::steps_per_epoch)
      .def_readwrite("resume_step", &OrderSpec::resume_step)
      .def_readwrite("resume_pass", &OrderSpec::resume_pass)
      .def_readwrite("resume_offset", &OrderSpec::resume_offset)
      .def_property(
          "resume_reads",
          [](const OrderSpec& o) {
            py::list out;
            for (const PassRead& r : o.resume_reads) out.append(py::make_tuple(r.world_size, r.batch_size, r.batches));
            return out;
          },
          [](OrderSpec& o, const std::vector<std::tuple<int64_t, int64_t, int64_t>>& reads) {
            o.resume_reads.clear();
            for (const auto& [w, b, k] : reads) o.resume_reads.push_back(PassRead{w, b, k});
          })
      .def("resumes_in", &OrderSpec::resumes_in, py::arg("pass_"),
           "Whether this run takes over another configuration's stream inside pass `pass_`.")
      .def("offset_in", &OrderSpec::offset_in, py::arg("pass_"),
           "Positions of the pass read before this run's share of it starts (an elastic resume's offset).");

  bind_spec<PadSpec>(m, "PadSpec")
      .def_readwrite("max_len", &PadSpec::max_len)
      .def_readwrite("pad_multiple", &PadSpec::pad_multiple)
      .def_readwrite("pad_left", &PadSpec::pad_left)
      .def_readwrite("truncate_left", &PadSpec::truncate_left)
      .def_readwrite("pad_value", &PadSpec::pad_value);

  bind_spec<PackSpec>(m, "PackSpec")
      .def_readwrite("bucket", &PackSpec::bucket)
      .def_readwrite("bucket_pool", &PackSpec::bucket_pool)
      .def_readwrite("pack", &PackSpec::pack)
      .def_readwrite("best_fit", &PackSpec::best_fit)
      .def_readwrite("batch_tokens", &PackSpec::batch_tokens);

  bind_spec<RunSpec>(m, "RunSpec")
      .def_readwrite("epoch", &RunSpec::epoch)
      .def_readwrite("first_batch", &RunSpec::first_batch)
      .def_readwrite("batches_per_block", &RunSpec::batches_per_block)
      .def_readwrite("num_threads", &RunSpec::num_threads)
      .def_readwrite("prefetch", &RunSpec::prefetch)
      .def_readwrite("auto_threads", &RunSpec::auto_threads)
      .def_readwrite("auto_prefetch", &RunSpec::auto_prefetch)
      .def_readwrite("max_threads", &RunSpec::max_threads)
      .def_readwrite("busy_threads", &RunSpec::busy_threads)
      .def_readwrite("max_prefetch", &RunSpec::max_prefetch)
      .def_readwrite("tune_window", &RunSpec::tune_window)
      .def_readwrite("pinned", &RunSpec::pinned)
      .def_readwrite("indices_only", &RunSpec::indices_only);

  py::class_<EpochSizes>(m, "EpochSizes")
      .def_readonly("per_rank", &EpochSizes::per_rank)
      .def_readonly("batches_per_pass", &EpochSizes::batches_per_pass)
      .def_readonly("batches_per_epoch", &EpochSizes::batches_per_epoch)
      .def("__repr__", [](const EpochSizes& s) {
        return "EpochSizes(per_rank=" + std::to_string(s.per_rank) + ", batches_per_pass=" +
               std::to_string(s.batches_per_pass) + ", batches_per_epoch=" + std::to_string(s.batches_per_epoch) + ")";
      });
  m.def("epoch_sizes", &epoch_sizes, py::arg("units"), py::arg("order"), py::arg("epoch") = -1,
        "A rank's items per pass and batches per pass and per epoch, for `units` items in a pass "
        "(samples, sequences, or packed rows); with `epoch`, of that epoch (an elastic resume's is shorter).");
  m.def("stream_share_size", &stream_share_size, py::arg("order"), py::arg("units"), py::arg("pass_"),
        "With virtual epochs: how many of a pass's `units` items every rank streams through.");
  m.def(
      "locate_sample",
      [](const OrderSpec& order, int64_t epoch, int64_t index, int64_t per_pass, int64_t first_pass) {
        // (the same arithmetic the block builders use; a pass of no item would divide by zero)
        if (order.steps_per_epoch > 0) require_arg(per_pass >= 1, "per_pass", ">= 1 with virtual epochs", per_pass);
        const StreamPosition at = locate_sample(order, epoch, index, per_pass, first_pass);
        return py::make_tuple(at.pass, at.index);
      },
      py::arg("order"), py::arg("epoch"), py::arg("index"), py::arg("per_pass"), py::arg("first_pass"),
      "(pass, index in this rank's share of it) of item `index` of epoch `epoch`, as the block builders find it.");
  m.def(
      "locate_batch",
      [](const OrderSpec& order, int64_t epoch, int64_t batch, int64_t units) {
        const StreamPosition at = locate_batch(order, epoch, batch, units);
        return py::make_tuple(at.pass, at.index);
      },
      py::arg("order"), py::arg("epoch"), py::arg("batch"), py::arg("units"),
      "(pass, batch of this rank's plan of it) of batch `batch` of epoch `epoch` where each pass is cut into "
      "the rank's own batches (bucketed sequences), as the block builders find it.");
}

void bind_sources(py::module_& m) {
  py::class_<NpyFile>(m, "NpyFile")
      .def_static("open", &NpyFile::open, py::arg("path"), py::call_guard<py::gil_scoped_release>())
      .def_static("open_raw",
                  [](const std::string& path, const std::string& dtype, std::vector<int64_t> shape) {
                    return NpyFile::open_raw(path, dtype_named(dtype), std::move(shape));
                  },
                  py::arg("path"), py::arg("dtype"), py::arg("shape"), py::call_guard<py::gil_scoped_release>())
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
}

void bind_windows(py::module_& m) {
  py::class_<Assembler, std::shared_ptr<Assembler>>(m, "Assembler")
      .def(py::init([](const py::list& inputs, const py::list& targets, const WindowSpec& window,
                       const OutputSpec& output, const py::object& covariates, const FieldOutput& covariates_output,
                       const py::object& known, const FieldOutput& known_output, const py::object& statics,
                       const std::string& scale) {
             WindowExtras extras;
             if (!covariates.is_none()) extras.covariates = to_series_list(covariates.cast<py::list>());
             if (!known.is_none()) extras.known = to_series_list(known.cast<py::list>());
             if (!statics.is_none()) extras.statics = {to_series(statics)};
             extras.covariates_out = covariates_output;
             extras.known_out = known_output;
             if (scale == "mean") extras.scaling = Scaling::Mean;
             else if (scale == "standard") extras.scaling = Scaling::Standard;
             else if (!scale.empty()) throw ArgumentError("scale must be '', 'mean' or 'standard', got '" + scale + "'");
             return std::make_shared<Assembler>(to_series_list(inputs), to_series_list(targets), window, output,
                                                std::move(extras));
           }),
           py::arg("inputs"), py::arg("targets"), py::arg("window"), py::arg("output"), py::kw_only(),
           py::arg("covariates") = py::none(), py::arg("covariates_output") = FieldOutput{},
           py::arg("known") = py::none(), py::arg("known_output") = FieldOutput{}, py::arg("static") = py::none(),
           py::arg("scale") = "",
           "Cuts windows of `inputs`; `targets` (aligned, or the inputs themselves) are read when the window "
           "spec has targets. The keywords add the optional fields: covariates and known (lists aligned with "
           "inputs), static (one row per series, written as output.static_output says) and scale ('mean' or "
           "'standard': per-window scaling of the inputs and of targets that are the inputs).")
      .def_property_readonly("layouts", [](const Assembler& a) {
        py::list out;
        for (const FieldLayout& l : a.layouts()) {
          out.append(py::make_tuple(l.name, std::string(dtype_name(l.dtype)), l.tail, l.sample_bytes));
        }
        return out;
      }, "(name, dtype, shape after the rows axis, bytes per sample) of each array a block carries.")
      .def("first_sample_of", &Assembler::first_sample_of, py::arg("series"),
           "The number (of the samples left) of a series' first sample; the series count gives num_samples.")
      .def_property_readonly("num_samples", &Assembler::num_samples)
      .def_property_readonly("num_excluded", &Assembler::num_excluded)
      .def_property_readonly("span", &Assembler::span)
      .def_property_readonly("units", &Assembler::units, "What the ranks share out of one pass: the samples.")
      .def("files_changed", [](const Assembler& a) { return a.files().check_now(); },
           py::call_guard<py::gil_scoped_release>(),
           "What happened to a mapped source file since it was mapped (gone, replaced, shrunk), or ''.")
      .def("exclude_non_finite", &Assembler::exclude_non_finite, py::arg("threads"),
           py::call_guard<py::gil_scoped_release>(),
           "Drops the samples that read a NaN or Inf in any field (one scan with `threads` threads); call before "
           "any Pipeline uses it.");
}

void bind_sequences(py::module_& m) {
  py::class_<SequenceData, std::shared_ptr<SequenceData>>(m, "Sequences")
      .def(py::init([](const py::list& inputs, const py::list& step_targets, const py::object& labels,
                       std::vector<int64_t> keep, const py::object& statics) {
             return SequenceData::make(to_series_list(inputs), to_series_list(step_targets),
                                       labels.is_none() ? Series{} : to_series(labels), std::move(keep),
                                       statics.is_none() ? Series{} : to_series(statics));
           }),
           py::arg("inputs"), py::arg("step_targets"), py::arg("labels"), py::arg("keep") = std::vector<int64_t>{},
           py::kw_only(), py::arg("static") = py::none())
      .def("files_changed", [](const SequenceData& d) { return d.watch.check_now(); },
           py::call_guard<py::gil_scoped_release>(),
           "What happened to a mapped source file since it was mapped (gone, replaced, shrunk), or ''.")
      .def_property_readonly("count", &SequenceData::count, "Sequences fed (after keep).")
      .def_property_readonly("lengths", [](const SequenceData& d) {
        const std::vector<int64_t> v = d.lengths();
        return py::array_t<int64_t>(static_cast<py::ssize_t>(v.size()), v.data());
      }, "The lengths of the sequences fed, in feeding order.")
      .def_property_readonly("total_steps", &SequenceData::total_steps)
      .def("units", &SequenceData::units, py::arg("pack"), py::arg("max_len"),
           "What the ranks share out of one pass: the sequences fed, or with pack the rows of "
           "max_len steps they fill.");

  m.def(
      "sequences_read",
      [](const SequenceData& data, const OrderSpec& order, uint64_t pass,
         const std::vector<std::tuple<int64_t, int64_t, int64_t>>& reads) {
        OrderSpec o = order;
        o.resume_reads.clear();
        for (const auto& [w, b, k] : reads) o.resume_reads.push_back(PassRead{w, b, k});
        o.validate();
        return sequences_read(data.count(), o, pass, o.resume_reads);
      },
      py::arg("data"), py::arg("order"), py::arg("pass_"), py::arg("reads"),
      "How many sequences of pass `pass_` the bucketed configurations `reads` ((world_size, batch_size, "
      "batches each rank read), in turn) read.");

  py::class_<PassSizes, std::shared_ptr<PassSizes>>(m, "PassSizes")
      .def(py::init([](const SequenceData& data, const OrderSpec& order, const PackSpec& pack, const PadSpec& pad) {
             return std::make_shared<PassSizes>(data.lengths(), order, pack, pad);
           }),
           py::arg("data"), py::arg("order"), py::arg("pack"), py::arg("pad"),
           "This rank's batches and items (rows, or batches) in each pass, where they differ from pass to "
           "pass (batch_tokens, best-fit packing); each pass counted once, by building its plan.")
      .def("batches", &PassSizes::batches, py::arg("pass_"), py::call_guard<py::gil_scoped_release>())
      .def("items", &PassSizes::items, py::arg("pass_"), py::call_guard<py::gil_scoped_release>())
      .def("units", &PassSizes::units, py::arg("pass_"), py::call_guard<py::gil_scoped_release>(),
           "The batches (rows) pass `pass_` is cut into over all ranks.")
      .def(
          "locate",
          [](const PassSizes& p, int64_t index, bool by_items) {
            const StreamPosition at = p.locate(index, by_items);
            return std::make_pair(static_cast<uint64_t>(at.pass), at.index);
          },
          py::arg("index"), py::arg("by_items") = false, py::call_guard<py::gil_scoped_release>(),
          "(pass, index in this rank's share) of batch (or item: by_items) `index` of the stream of passes.");
}

void bind_pipeline(py::module_& m) {
  py::class_<PyPipeline>(m, "Pipeline")
      .def_static(
          "windows",
          [](std::shared_ptr<Assembler> assembler, const OrderSpec& order, const RunSpec& run,
             std::shared_ptr<MixOrder> mix) {
            return start_pipeline(std::make_shared<WindowBlocks>(std::move(assembler), order, run, std::move(mix)), run);
          },
          py::arg("assembler"), py::arg("order"), py::arg("run"), py::arg("mix") = nullptr)
      .def_static(
          "sequences",
          [](std::shared_ptr<SequenceData> data, const OrderSpec& order, const PackSpec& pack, const PadSpec& pad,
             const OutputSpec& output, const RunSpec& run, std::shared_ptr<MixOrder> mix,
             std::shared_ptr<PassSizes> passes) {
            std::shared_ptr<SequenceBlocks> builder;
            {
              py::gil_scoped_release nogil;  // the first pass's plan sorts every sequence
              builder = std::make_shared<SequenceBlocks>(std::move(data), order, pack, pad, output, run, std::move(mix),
                                                         std::move(passes));
            }
            return start_pipeline(std::move(builder), run);
          },
          py::arg("data"), py::arg("order"), py::arg("pack"), py::arg("pad"), py::arg("output"), py::arg("run"),
          py::arg("mix") = nullptr, py::arg("passes") = nullptr)
      .def("next", &PyPipeline::next)
      .def_property_readonly("shape", &PyPipeline::shape,
                             "(threads, prefetch): workers claiming blocks and blocks built ahead, now.")
      .def("retune", &PyPipeline::retune, py::arg("threads"), py::arg("prefetch"),
           py::call_guard<py::gil_scoped_release>(),
           "Sets (threads, prefetch) as the tuner would, within the run's limits; tuning goes on from "
           "there. Tests change them in the middle of an epoch with it: the batches never depend on them.")
      .def("close", &PyPipeline::close);
}

void bind_functions(py::module_& m) {
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
        [](const py::list& series, int64_t start, int64_t end, bool skip_non_finite) {
          std::vector<Series> s = to_series_list(series);
          Moments mo;
          {
            py::gil_scoped_release nogil;
            mo = compute_moments(s, start, end, skip_non_finite ? NonFinite::Skip : NonFinite::Fail);
          }
          return py::make_tuple(mo.mean, mo.std, mo.count);
        },
        py::arg("series"), py::arg("start") = 0, py::arg("end") = kSeriesEnd, py::arg("skip_non_finite") = false,
        "Per-element (mean, std, steps seen) over the steps [start, end) of every series (Python slicing: "
        "negative values count from each series' end). A NaN or Inf is a ValueError naming series and step, or "
        "with skip_non_finite left out of its element's statistics.");

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

void bind_cuda(py::module_& m) {
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

  bind_specs(m);
  bind_sources(m);
  bind_ragged_view(m);
  bind_windows(m);
  bind_sequences(m);
  bind_pipeline(m);
  add_chunk_chain(m);
  bind_functions(m);
  bind_cuda(m);
}
