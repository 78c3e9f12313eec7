// Tests of the C++ core on its own (no Python): `make sanitize` runs them under ASan/UBSan.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <new>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "common/errors.hpp"
#include "common/half.hpp"
#include "order/epoch_sizes.hpp"
#include "order/mix_order.hpp"
#include "order/order.hpp"
#include "order/permutation.hpp"
#include "pipeline/block.hpp"
#include "pipeline/fields.hpp"
#include "pipeline/pipeline.hpp"
#include "pipeline/tuner.hpp"
#include "sequences/sequence_blocks.hpp"
#include "sequences/sequence_data.hpp"
#include "source/fingerprint.hpp"
#include "source/moments.hpp"
#include "source/npy.hpp"
#include "source/ragged_file.hpp"
#include "windows/assembler.hpp"
#include "windows/window_blocks.hpp"

using namespace fastfeed;

static int failures = 0;
#define CHECK(cond)                                                  \
  do {                                                               \
    if (!(cond)) {                                                   \
      std::fprintf(stderr, "%s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                    \
    }                                                                \
  } while (0)

// Specs in a line (C++17 has no designated initialisers).
static OrderSpec order_of(int64_t batch_size, bool shuffle = false, uint64_t seed = 0, int64_t steps_per_epoch = 0,
                          bool drop_last = false, int64_t rank = 0, int64_t world_size = 1) {
  OrderSpec o;
  o.shuffle = shuffle;
  o.seed = seed;
  o.rank = rank;
  o.world_size = world_size;
  o.batch_size = batch_size;
  o.drop_last = drop_last;
  o.steps_per_epoch = steps_per_epoch;
  return o;
}

static RunSpec run_of(int64_t epoch, int64_t batches_per_block = 1, int num_threads = 1, int prefetch = 2,
                      int64_t first_batch = 0) {
  RunSpec r;
  r.epoch = epoch;
  r.first_batch = first_batch;
  r.batches_per_block = batches_per_block;
  r.num_threads = num_threads;
  r.prefetch = prefetch;
  return r;
}

// The array of field `name`, which the block must carry.
template <class T>
static const T* field_data(const Block& b, std::string_view name) {
  const Array* a = b.find(name);
  if (a == nullptr) {
    std::fprintf(stderr, "block has no field %s\n", std::string(name).c_str());
    std::abort();
  }
  return reinterpret_cast<const T*>(a->data.get());
}

static void permutation_is_a_bijection() {
  for (uint64_t n : {0ull, 1ull, 2ull, 3ull, 17ull, 1000ull, 4097ull}) {
    Permutation p(n, 42, 7);
    std::set<uint64_t> seen;
    for (uint64_t i = 0; i < n; ++i) seen.insert(p(i));
    CHECK(seen.size() == n);
    if (n > 0) CHECK(*seen.rbegin() == n - 1);
  }
}

static void fingerprint_sees_every_value_of_small_sources() {
  std::vector<float> values(1000 * 3);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  Series s;
  s.data = reinterpret_cast<const std::byte*>(values.data());
  s.dtype = DType::Float32;
  s.length = 1000;
  s.row_elems = 3;
  const uint64_t budget = values.size() * sizeof(float);
  const uint64_t whole = fingerprint({s}, 8, budget);
  const uint64_t ends = fingerprint({s}, 8, budget - 1);  // one byte over: the ends alone
  CHECK(whole == fingerprint({s}, 8, budget));
  CHECK(whole != ends);
  for (size_t at : {size_t{0}, size_t{1501}, values.size() - 1}) {  // the first, a middle and the last value
    const float kept = values[at];
    values[at] += 0.5f;
    CHECK(fingerprint({s}, 8, budget) != whole);
    values[at] = kept;
  }
  values[1501] += 0.5f;  // in the middle: only the whole hash sees it
  CHECK(fingerprint({s}, 8, budget - 1) == ends);
  values[1501] -= 0.5f;
  Series shorter = s;
  shorter.length = 999;
  CHECK(fingerprint({shorter}, 8, budget) != whole);
  CHECK(fingerprint({s, s}, 8, 2 * budget) != whole);
}

static void window_index_skips_short_series() {
  WindowSpec spec{3, 1, 1, 1};  // span 4
  SampleIndex idx({5, 2, 0, 4}, spec);
  CHECK(idx.size() == 3);  // 2 + 0 + 0 + 1
  CHECK(idx.locate(1).series == 0 && idx.locate(1).start == 1);
  CHECK(idx.locate(2).series == 3 && idx.locate(2).start == 0);
}

static std::vector<std::byte> npy_image(const std::string& header_dict, size_t data_bytes) {
  std::string header = header_dict;
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::vector<std::byte> out(10 + header.size() + data_bytes);
  std::memcpy(out.data(), "\x93NUMPY\x01\x00", 8);
  out[8] = static_cast<std::byte>(header.size() & 0xff);
  out[9] = static_cast<std::byte>(header.size() >> 8);
  std::memcpy(out.data() + 10, header.data(), header.size());
  return out;
}

static bool throws_format_error(const std::vector<std::byte>& img) {
  try {
    parse_npy_header(img.data(), img.size(), "x.npy");
  } catch (const FormatError&) {
    return true;
  }
  return false;
}

static void npy_header_parsing() {
  auto ok = npy_image("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", 24);
  NpyHeader h = parse_npy_header(ok.data(), ok.size(), "x.npy");
  CHECK(h.dtype == DType::Float32);
  CHECK(h.shape.size() == 2 && h.shape[0] == 3 && h.shape[1] == 2);
  CHECK(h.data_offset % 64 == 0);
  CHECK(throws_format_error(npy_image("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", 23)));
  CHECK(throws_format_error(npy_image("{'descr': '|O', 'fortran_order': False, 'shape': (3,), }", 24)));
  CHECK(throws_format_error(npy_image("{'descr': '<f4', 'fortran_order': True, 'shape': (3,), }", 12)));
  CHECK(throws_format_error(npy_image("{'descr': '<f4', 'shape': (3,), }", 12)));
  CHECK(throws_format_error(npy_image("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 0)));
  std::vector<std::byte> junk(3);
  CHECK(throws_format_error(junk));
  // Bytes that are not ASCII text: refused, and a message quotes them escaped, so that it is
  // text (Python decodes messages as UTF-8; a raw \xff made a UnicodeDecodeError of it).
  auto message_of = [](const std::vector<std::byte>& img) {
    try {
      parse_npy_header(img.data(), img.size(), "x.npy");
    } catch (const FormatError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK(message_of(npy_image("{'descr': '<\xff" "4', 'fortran_order': False, 'shape': (3,), }", 12))
            .rfind("x.npy: unsupported dtype '<\\xff4' (supported: ", 0) == 0);
  CHECK(message_of(npy_image("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': '\xc3\xa9'}", 12)) ==
        "x.npy: the .npy header is not ASCII text (byte 0xc3 at offset 72 of the file)");
  std::string escaped;  // at most 64 bytes of the dtype are shown
  for (int i = 0; i < 64; ++i) escaped += "\\x5c";
  CHECK(message_of(npy_image("{'descr': '" + std::string(100, '\\') + "', 'fortran_order': False, 'shape': (3,), }",
                             12)) == "x.npy: malformed dtype '" + escaped + "...' in the .npy header");
}

static std::vector<std::byte> bytes_of(const char* s, size_t n) {
  std::vector<std::byte> out(n);
  std::memcpy(out.data(), s, n);
  return out;
}
#define BYTES(lit) bytes_of(lit, sizeof(lit) - 1)

// Inputs found by fuzz/npy_header_fuzzer.cpp (`make fuzz`), byte for byte.
static void npy_fuzz_regressions() {
  // Values at byte 75, not a multiple of the 4-byte item size: typed reads in place would be
  // misaligned (undefined behaviour). Was accepted.
  CHECK(throws_format_error(BYTES(
      "\x93NUMPY\x01\x00\x41\x00{'descr': '<i4', 'fortran_order': False, 'shape': (4, 0), }"
      "                                                          \n")));
  // "(0 36854775807 2504965052179677182, 4)": dimensions without commas were accepted, and a
  // leading 0 let the product of the others overflow int64 (readers multiply the feature
  // shape). Was accepted as shape (0, 36854775807, 2504965052179677182, 4).
  CHECK(throws_format_error(BYTES(
      "\x93NUMPY\x01\x00\x76\x00{'descr': '|i1', 'fortran_order': False, 'shape': (000000000000000       "
      "036854775807 000002504965052179677182, 4), \xb3}        036854775807    \n")));
  // The same overflow with well-formed commas, and the separators on their own.
  CHECK(throws_format_error(npy_image(
      "{'descr': '|i1', 'fortran_order': False, 'shape': (0, 36854775807, 2504965052179677182, 4), }", 0)));
  CHECK(throws_format_error(npy_image("{'descr': '|i1', 'fortran_order': False, 'shape': (2 3), }", 6)));
  CHECK(throws_format_error(npy_image("{'descr': '|i1', 'fortran_order': False, 'shape': (2,,3), }", 6)));
  auto trailing = npy_image("{'descr': '|i1', 'fortran_order': False, 'shape': ( 2 , 3 , ), }", 6);
  NpyHeader h = parse_npy_header(trailing.data(), trailing.size(), "x.npy");
  CHECK(h.shape.size() == 2 && h.shape[0] == 2 && h.shape[1] == 3);
  auto scalar = npy_image("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", 8);
  CHECK(parse_npy_header(scalar.data(), scalar.size(), "x.npy").shape.empty());
  auto empty = npy_image("{'descr': '<f8', 'fortran_order': False, 'shape': (0, 1099511627776), }", 0);
  CHECK(parse_npy_header(empty.data(), empty.size(), "x.npy").shape.size() == 2);  // 0 x 2^40: no values, a sane shape
}

static void half_conversions_round_to_nearest_even() {
  CHECK(float_to_half(1.0f) == 0x3c00);
  CHECK(float_to_half(65504.0f) == 0x7bff);
  CHECK(float_to_half(65520.0f) == 0x7c00);           // rounds up into infinity
  CHECK(double_to_half(5.960464477539063e-08) == 1);   // smallest subnormal
  CHECK(double_to_half(2.9802322387695312e-08) == 0);  // half of it: tie to even (0)
  CHECK(half_to_float(0x0001) == 5.960464477539063e-08f);
  CHECK(float_to_bfloat16(1.00390625f) == 0x3f80);     // tie rounds to even
}

static void pipeline_delivers_every_batch_in_order() {
  std::vector<float> data(1000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>(i);
  Series s;
  s.data = reinterpret_cast<const std::byte*>(data.data());
  s.length = 1000;
  s.dtype = DType::Float32;
  OutputSpec out;
  WindowSpec spec{4, 1, 1, 1};
  auto assembler = std::make_shared<Assembler>(std::vector<Series>{s}, std::vector<Series>{s}, spec, out);
  const int64_t n = assembler->num_samples();  // 996
  for (int threads : {1, 3}) {
    const RunSpec run = run_of(1, 2, threads, 3);
    auto builder = std::make_shared<WindowBlocks>(assembler, order_of(10, true, 5), run);
    CHECK(builder->sizes().batches_per_epoch == (n + 9) / 10);
    Pipeline pipe(builder, threads, 3);
    Permutation perm(static_cast<uint64_t>(n), 5, 1);
    Block b;
    int64_t position = 0;
    while (pipe.next(&b, std::chrono::milliseconds(1000)) == Pipeline::Status::Ready) {
      const auto* x = field_data<float>(b, field::kX);
      for (int64_t i = 0; i < b.num_samples; ++i, ++position) {
        CHECK(x[i * 4] == static_cast<float>(perm(static_cast<uint64_t>(position))));
      }
    }
    CHECK(position == n);
  }
  // Closing mid-epoch joins the workers without delivering more.
  Pipeline pipe(std::make_shared<WindowBlocks>(assembler, order_of(1), run_of(0, 1, 4, 2)), 4, 2);
  Block b;
  CHECK(pipe.next(&b, std::chrono::milliseconds(1000)) == Pipeline::Status::Ready);
  pipe.close();
  CHECK(pipe.next(&b, std::chrono::milliseconds(10)) == Pipeline::Status::Finished);
}

// Packed rows hold every step of every sequence exactly once, whatever the thread count.
static void packing_keeps_every_step_once() {
  std::vector<int32_t> values;
  auto data = std::make_shared<SequenceData>();
  std::vector<int64_t> lengths = {5, 0, 17, 3, 9, 1, 30, 4};
  for (int64_t len : lengths) {
    for (int64_t t = 0; t < len; ++t) values.push_back(static_cast<int32_t>(values.size()) + 1);
  }
  int64_t offset = 0;
  for (int64_t len : lengths) {
    Series s;
    s.data = reinterpret_cast<const std::byte*>(values.data() + offset);
    s.length = len;
    s.dtype = DType::Int32;
    data->inputs.push_back(s);
    offset += len;
  }
  for (int threads : {1, 3}) {
    PackSpec pack;
    pack.pack = true;
    PadSpec pad{8, 1, false, false, 0.0};
    OutputSpec out;
    out.x_dtype = DType::Int32;
    auto builder = std::make_shared<SequenceBlocks>(data, order_of(2, true, 7), pack, pad, out, run_of(0, 1, threads, 2));
    CHECK(data->units(true, 8) == (69 + 7) / 8);
    CHECK(builder->sizes().batches_per_epoch == (69 + 15) / 16);  // 69 steps in rows of 8, two rows a batch
    Pipeline pipe(builder, threads, 2);
    std::vector<int> seen(values.size() + 1, 0);
    Block b;
    while (pipe.next(&b, std::chrono::milliseconds(1000)) == Pipeline::Status::Ready) {
      CHECK(b.failed_at < 0);
      const auto* x = field_data<int32_t>(b, field::kX);
      const auto* seg = field_data<int32_t>(b, field::kSegmentIds);
      for (int64_t i = 0; i < b.num_samples * 8; ++i) {
        CHECK((seg[i] == 0) == (x[i] == 0));
        if (x[i] > 0) ++seen[static_cast<size_t>(x[i])];
      }
    }
    for (size_t v = 1; v < seen.size(); ++v) CHECK(seen[v] == 1);
  }
}

// A scratch directory for the file-based tests, removed at the end of main().
static std::string scratch_dir() {
  static std::string dir = [] {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fastfeed_core_tests_XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + tmpl);
    return tmpl;
  }();
  return dir;
}

static std::string write_file(const std::string& name, const void* data, size_t size) {
  std::string path = scratch_dir() + "/" + name;
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

template <typename T>
static std::string write_vector(const std::string& name, const std::vector<T>& v) {
  return write_file(name, v.data(), v.size() * sizeof(T));
}

// The FormatError message of opening, or "" when it opens.
static std::string ragged_error(const std::string& values, const std::string& offsets, int64_t count,
                                int64_t steps, DType dtype = DType::Float32, int64_t row_elems = 2) {
  try {
    RaggedFile::open(values, offsets, count, steps, dtype, row_elems);
  } catch (const FormatError& e) {
    return e.what();
  }
  return "";
}

static bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A dataset's labels: bare values without a header, mapped like a .npy file, so that the bus
// guard and the sequences' file watch know them (a shrunk labels file once killed the process).
static void npy_file_maps_raw_values() {
  std::vector<int64_t> labels{7, 8, 9, 10, 11, 12, 99};  // 3 rows of 2, then an uncommitted append
  auto path = write_vector("labels.bin", labels);
  NpyFile f = NpyFile::open_raw(path, DType::Int64, {3, 2});
  CHECK(f.header.dtype == DType::Int64 && f.header.data_offset == 0);
  CHECK((f.header.shape == std::vector<int64_t>{3, 2}));
  CHECK(f.file != nullptr && f.file->path() == path && f.file->size() == labels.size() * sizeof(int64_t));
  CHECK(reinterpret_cast<const int64_t*>(f.values())[5] == 12);
  auto error = [](const std::string& file, DType dtype, std::vector<int64_t> shape) -> std::string {
    try {
      NpyFile::open_raw(file, dtype, std::move(shape));
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  };
  CHECK(error(path, DType::Int64, {7}).empty() && error(path, DType::Int8, {0, 5}).empty());
  CHECK(contains(error(path, DType::Int64, {4, 2}),
                 "labels.bin: too short: int64 values of shape (4, 2) need 64 bytes, but the file holds 56"));
  CHECK(contains(error(path, DType::Float32, {15}), "values of shape (15,) need 60 bytes"));
  CHECK(contains(error(path, DType::Int64, {-1}), "dimensions must be >= 0"));
  CHECK(contains(error(path, DType::Int64, {0, int64_t{1} << 62, 8}), "too large"));
  CHECK(contains(error(scratch_dir() + "/no_labels.bin", DType::Int64, {1}), "no_labels.bin: cannot open"));

  // Labels of two pages for two sequences, the file then cut to one page: the sequences' watch
  // names it, and a read of the page that is gone gives zeros and marks the map damaged.
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<int64_t> wide(page / 4, 5);  // two rows of a page each
  auto big = write_vector("labels2.bin", wide);
  NpyFile g = NpyFile::open_raw(big, DType::Int64, {2, static_cast<int64_t>(page / 8)});
  Series rows;
  rows.data = g.values();
  rows.length = 2;
  rows.row_elems = static_cast<int64_t>(page / 8);
  rows.dtype = DType::Int64;
  rows.file = g.file;
  Series input;
  input.data = reinterpret_cast<const std::byte*>(wide.data());
  input.length = 1;
  input.dtype = DType::Int64;
  auto data = SequenceData::make({input, input}, {}, rows, {});
  CHECK(data->watch.check_now().empty());
  std::filesystem::resize_file(big, page);
  CHECK(contains(data->watch.check_now(), "labels2.bin shrank from " + std::to_string(2 * page)));
  CHECK(!g.file->damaged());
  const volatile int64_t* second = reinterpret_cast<const int64_t*>(data->labels.row(1));
  CHECK(second[0] == 0);  // a SIGBUS caught by the guard, not the end of the process
  CHECK(g.file->damaged());
  CHECK(contains(data->watch.problem(), "labels2.bin shrank while it was being read"));
}

static void ragged_file_cuts_sequences() {
  // Three sequences of 2, 0 and 3 steps of two float32 each, then bytes of an uncommitted append.
  std::vector<float> values(10);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  values.push_back(99.0f);
  std::vector<int64_t> offsets{0, 2, 2, 5, 77};
  auto vpath = write_vector("values.bin", values);
  auto opath = write_vector("offsets.bin", offsets);
  auto r = RaggedFile::open(vpath, opath, 3, 5, DType::Float32, 2);
  CHECK(r->count() == 3);
  CHECK(r->offsets()[3] == 5);
  CHECK((r->lengths() == std::vector<int64_t>{2, 0, 3}));
  Series s = r->sequence(2);
  CHECK(s.length == 3 && s.row_elems == 2 && s.dtype == DType::Float32);
  CHECK(reinterpret_cast<const float*>(s.data)[0] == 4.0f);
  CHECK(reinterpret_cast<const float*>(s.row(2))[1] == 9.0f);
  CHECK(r->sequence(1).length == 0);
  bool threw = false;
  try {
    r->sequence(3);
  } catch (const ArgumentError&) {
    threw = true;
  }
  CHECK(threw);
  // The Series keeps the values mapped after the RaggedFile is gone.
  r.reset();
  CHECK(s.file != nullptr && reinterpret_cast<const float*>(s.data)[5] == 9.0f);
}

static void ragged_file_handles_empty_files() {
  auto empty = write_file("empty.bin", "", 0);
  auto zero = write_vector("zero.bin", std::vector<int64_t>{0});
  auto r = RaggedFile::open(empty, zero, 0, 0, DType::Float64, 3);
  CHECK(r->count() == 0 && r->lengths().empty());
  // Sequences of zero steps only: the values file stays empty.
  auto zeros = write_vector("zeros.bin", std::vector<int64_t>{0, 0, 0});
  auto r2 = RaggedFile::open(empty, zeros, 2, 0, DType::Int8, 1);
  CHECK(r2->sequence(1).length == 0);
  // A zero-sized feature shape: rows of no bytes.
  auto r3 = RaggedFile::open(empty, write_vector("o3.bin", std::vector<int64_t>{0, 4}), 1, 4, DType::Float32, 0);
  CHECK(r3->sequence(0).length == 4);
  CHECK(contains(ragged_error(empty, empty, 0, 0), "empty.bin: too short: 0 sequences need 1 offsets"));
}

static void ragged_file_refuses_damage() {
  std::vector<float> values(10, 1.0f);
  auto vpath = write_vector("v.bin", values);
  auto good = write_vector("good.bin", std::vector<int64_t>{0, 2, 5});
  CHECK(ragged_error(vpath, good, 2, 5).empty());
  std::string e = ragged_error(vpath, good, 2, 6);  // 6 steps of 8 bytes > the 40 bytes there
  CHECK(contains(e, "good.bin: the last offset (offsets[2]) is 5, but the header says there are 6 steps"));
  auto v_short = write_vector("v_short.bin", std::vector<float>(9, 1.0f));
  e = ragged_error(v_short, good, 2, 5);
  CHECK(contains(e, "v_short.bin: too short: 5 steps of 8 bytes (float32) need 40 bytes, but the file holds 36"));
  e = ragged_error(vpath, good, 3, 5);
  CHECK(contains(e, "good.bin: too short: 3 sequences need 4 offsets (32 bytes), but the file holds 24 bytes"));
  e = ragged_error(vpath, write_vector("start.bin", std::vector<int64_t>{1, 2, 5}), 2, 5);
  CHECK(contains(e, "start.bin: offsets[0] is 1, but the first sequence must start at 0"));
  e = ragged_error(vpath, write_vector("dec.bin", std::vector<int64_t>{0, 3, 2, 5}), 3, 5);
  CHECK(contains(e, "dec.bin: offsets decrease at index 2: offsets[2] = 2 < offsets[1] = 3"));
  e = ragged_error(vpath, scratch_dir() + "/missing.bin", 2, 5);
  CHECK(contains(e, "missing.bin: cannot open"));
  e = ragged_error(vpath, good, 2, 5, DType::Float32, int64_t{1} << 62);
  CHECK(contains(e, "do not fit in a file"));
}

// Under `make tsan` these are the interesting ones: several threads on one pipeline at once.
static std::shared_ptr<Assembler> float_assembler(const std::vector<float>& data, int64_t window) {
  Series s;
  s.data = reinterpret_cast<const std::byte*>(data.data());
  s.length = static_cast<int64_t>(data.size());
  s.dtype = DType::Float32;
  OutputSpec out;
  out.x_dtype = DType::Float64;  // a conversion, so that building a block takes a moment
  WindowSpec spec{window, 1, 1, 1};
  return std::make_shared<Assembler>(std::vector<Series>{s}, std::vector<Series>{s}, spec, out);
}

// close() from other threads while the consumer waits in next(), and from two threads at once
// (Python's Feeder.close() and the iterator's own clean-up both release the GIL around it).
static void pipeline_close_races_next_and_close() {
  std::vector<float> data(20000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>(i);
  auto assembler = float_assembler(data, 256);
  const int64_t n = assembler->num_samples();
  for (int round = 0; round < 30; ++round) {
    auto builder = std::make_shared<WindowBlocks>(assembler, order_of(16, true, 3), run_of(round, 1, 4, 2));
    const int64_t batches = builder->sizes().batches_per_epoch;
    CHECK(batches == (n + 15) / 16);
    Pipeline pipe(builder, 4, 2);
    int64_t delivered = 0;
    std::thread consumer([&] {
      Block b;
      for (;;) {
        const auto st = pipe.next(&b, std::chrono::milliseconds(5));
        if (st == Pipeline::Status::Finished) break;
        if (st == Pipeline::Status::Ready) ++delivered;
      }
    });
    std::this_thread::sleep_for(std::chrono::microseconds(200 * (round % 5)));
    std::thread closer_a([&] { pipe.close(); });
    std::thread closer_b([&] { pipe.close(); });
    closer_a.join();
    closer_b.join();
    consumer.join();
    pipe.close();
    CHECK(delivered <= batches);
    Block b;
    CHECK(pipe.next(&b, std::chrono::milliseconds(1)) == Pipeline::Status::Finished);
  }
}

// Blocks (and their pooled buffers) outlive the pipeline and its builder, and are released by
// other threads than the one that received them, while the next pipeline recycles its own.
static void buffers_outlive_their_pipeline() {
  std::vector<float> data(5000, 1.0f);
  auto assembler = float_assembler(data, 32);
  const int64_t n = assembler->num_samples();
  std::vector<Block> kept;
  for (int epoch = 0; epoch < 4; ++epoch) {
    auto pipe = std::make_unique<Pipeline>(
        std::make_shared<WindowBlocks>(assembler, order_of(8, true, 9), run_of(epoch, 3, 3, 1)), 3, 3);
    Block b;
    int64_t got = 0;
    while (pipe->next(&b, std::chrono::milliseconds(1000)) == Pipeline::Status::Ready) {
      if (++got % 7 == 0) kept.push_back(std::move(b));
    }
    CHECK(got == ((n + 7) / 8 + 2) / 3);  // blocks of three batches
    pipe.reset();
    std::vector<Block> batch_of_kept;
    batch_of_kept.swap(kept);
    std::thread releaser([blocks = std::move(batch_of_kept)]() mutable {
      for (const Block& k : blocks) {
        const auto* x = field_data<double>(k, field::kX);
        if (x[0] != 1.0) std::abort();
      }
      blocks.clear();
    });
    releaser.join();
  }
}

// A child forked while a pipeline's workers run (waiting for space, or building) cannot use
// it: next() says so, and close() and the destructor neither join threads that do not exist
// there (std::system_error, then terminate) nor touch what they held (a hang). Blocks the
// child holds go back without the pool's lock.
static void pipeline_in_a_forked_child() {
  std::vector<float> data(20000, 1.0f);
  auto assembler = float_assembler(data, 64);
  for (int round = 0; round < 4; ++round) {
    auto pipe = std::make_unique<Pipeline>(
        std::make_shared<WindowBlocks>(assembler, order_of(8, true, 1), run_of(round, 2, 3, 2)), 3, 2);
    Block held;
    CHECK(pipe->next(&held, std::chrono::milliseconds(5000)) == Pipeline::Status::Ready);
    std::this_thread::sleep_for(std::chrono::milliseconds(round));  // workers waiting, or building
    const pid_t child = ::fork();
    if (child == 0) {
      int code = 0;
      try {
        Block b;
        pipe->next(&b, std::chrono::milliseconds(100));
        code = 2;  // no exception: the child would wait forever for workers that are not there
      } catch (const std::runtime_error& e) {
        if (!contains(e.what(), "make a new Feeder in the child")) code = 3;
      }
      pipe->close();
      pipe.reset();
      held = Block{};
      std::_Exit(code);
    }
    CHECK(child > 0);
    int status = -1;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (::waitpid(child, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(child, SIGKILL);
        ::waitpid(child, &status, 0);
        std::fprintf(stderr, "pipeline_in_a_forked_child: the child hung\n");
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    // The parent's pipeline goes on as if nothing happened.
    int64_t delivered = 1;
    Block b;
    while (pipe->next(&b, std::chrono::milliseconds(5000)) == Pipeline::Status::Ready) ++delivered;
    CHECK(delivered == pipe->num_blocks());
  }
}

// Whole sequences with several workers over virtual epochs that span passes: the workers share
// the builder's cache of pass plans.
static void sequence_workers_share_pass_plans() {
  std::vector<int32_t> values(4000);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<int32_t>(i % 1000) + 1;
  auto data = std::make_shared<SequenceData>();
  int64_t offset = 0;
  for (int i = 0; offset < 3900; ++i) {
    Series s;
    s.data = reinterpret_cast<const std::byte*>(values.data() + offset);
    s.length = 1 + (i * 7) % 23;
    s.dtype = DType::Int32;
    data->inputs.push_back(s);
    offset += s.length;
  }
  PackSpec pack;
  pack.bucket = true;
  pack.bucket_pool = 2;
  PadSpec pad{0, 8, false, false, 0.0};
  OutputSpec out;
  out.x_dtype = DType::Float32;
  for (int epoch = 0; epoch < 3; ++epoch) {
    // 500-batch virtual epochs: several passes each.
    Pipeline pipe(std::make_shared<SequenceBlocks>(data, order_of(4, true, 11, 500), pack, pad, out, run_of(epoch, 1, 4, 2)),
                  4, 3);
    Block b;
    int64_t got = 0;
    while (pipe.next(&b, std::chrono::milliseconds(1000)) == Pipeline::Status::Ready) {
      CHECK(b.failed_at < 0);
      ++got;
    }
    CHECK(got == 500);
  }
}

// Every rank reads distinct positions (r, r + world, ...: all below n, so shares are disjoint)
// and ends up with the same number of batches; at most world - 1 items are left out.
static void rank_shares_are_disjoint_with_equal_batch_counts() {
  for (int64_t n = 1; n <= 40; ++n) {
    for (int64_t world = 1; world <= 5; ++world) {
      for (int64_t unit = 1; unit <= 6; ++unit) {
        for (bool drop_last : {false, true}) {
          std::set<int64_t> batch_counts;
          int64_t total = 0;
          for (int64_t rank = 0; rank < world; ++rank) {
            const int64_t size = rank_share_size(n, rank, world, unit, drop_last);
            CHECK(size == 0 || (size - 1) * world + rank < n);  // its last position is in the pass
            batch_counts.insert(drop_last ? size / unit : (size + unit - 1) / unit);
            total += size;
          }
          CHECK(batch_counts.size() == 1);
          CHECK(total <= n && n - total < world);
        }
      }
    }
  }
  CHECK(rank_share_size(11, 0, 2, 2, false) == 6 && rank_share_size(11, 1, 2, 2, false) == 5);  // 3 batches each
  CHECK(rank_share_size(9, 0, 2, 2, false) == 4 && rank_share_size(9, 1, 2, 2, false) == 4);  // 5 would make 3
}

// Fields are found by name, set() adds a field once and returns it after, and insertion order is kept.
static void block_fields_by_name() {
  Block b;
  CHECK(b.find(field::kX) == nullptr);
  Array& x = b.set(field::kX);
  x.dtype = DType::Int16;
  x.shape = {3, 4};
  CHECK(x.per_row);  // the default: the first axis is the block's rows
  Array& cu = b.set(field::kCuSeqlens);
  cu.per_row = false;
  CHECK(&b.set(field::kX) == b.find(field::kX));  // no second x
  CHECK(b.fields.size() == 2);
  CHECK(b.fields[0].first == "x" && b.fields[1].first == "cu_seqlens");
  const Block& cb = b;
  CHECK(cb.find("x") != nullptr && cb.find("x")->dtype == DType::Int16 && cb.find("x")->shape[1] == 4);
  CHECK(!cb.find(field::kCuSeqlens)->per_row);
  CHECK(!*cb.find("x"));  // no buffer yet
  CHECK(cb.find("y") == nullptr && cb.find("") == nullptr);
}

static bool throws_argument_error(const std::function<void()>& f, const std::string& part = "") {
  try {
    f();
  } catch (const ArgumentError& e) {
    if (!contains(e.what(), part)) std::fprintf(stderr, "message was: %s\n", e.what());
    return contains(e.what(), part);
  }
  return false;
}

static void epoch_sizes_exact_cases() {
  EpochSizes s = epoch_sizes(10, order_of(3));
  CHECK(s.per_rank == 10 && s.batches_per_pass == 4 && s.batches_per_epoch == 4);
  s = epoch_sizes(10, order_of(3, false, 0, 0, /*drop_last=*/true));
  CHECK(s.per_rank == 10 && s.batches_per_pass == 3 && s.batches_per_epoch == 3);
  // 10 items over 3 ranks: 3 each and one left; with batches of 2 it makes rank 0's last batch
  // longer only (2 batches either way), so rank 0 takes it.
  for (int64_t rank = 0; rank < 3; ++rank) {
    s = epoch_sizes(10, order_of(2, false, 0, 0, false, rank, 3));
    CHECK(s.per_rank == (rank == 0 ? 4 : 3) && s.batches_per_pass == 2);
  }
  // Batches of 3: a fourth item would add a batch on rank 0, so it sits out.
  s = epoch_sizes(10, order_of(3, false, 0, 0, false, 0, 3));
  CHECK(s.per_rank == 3 && s.batches_per_pass == 1);
  // drop_last: the left-over items always sit out.
  s = epoch_sizes(11, order_of(2, false, 0, 0, true, 1, 3));
  CHECK(s.per_rank == 3 && s.batches_per_pass == 1 && s.batches_per_epoch == 1);
  // Virtual epochs: the epoch is steps_per_epoch batches whatever a pass holds.
  s = epoch_sizes(10, order_of(3, false, 0, 7));
  CHECK(s.per_rank == 10 && s.batches_per_pass == 4 && s.batches_per_epoch == 7);
  s = epoch_sizes(0, order_of(4));
  CHECK(s.per_rank == 0 && s.batches_per_pass == 0 && s.batches_per_epoch == 0);
  CHECK(throws_argument_error([] { epoch_sizes(10, order_of(0)); }, "OrderSpec.batch_size must be >= 1, got 0"));
  CHECK(throws_argument_error([] { epoch_sizes(10, order_of(1, false, 0, 0, false, 3, 3)); },
                              "OrderSpec.rank must be in [0, world_size=3), got 3"));
  CHECK(throws_argument_error([] { epoch_sizes(10, order_of(1, false, 0, 0, false, 0, 0)); }, "OrderSpec.world_size"));
  CHECK(throws_argument_error([] { epoch_sizes(10, order_of(1, false, 0, -1)); }, "OrderSpec.steps_per_epoch"));
}

static void window_span_and_validation() {
  CHECK((WindowSpec{1, 1, 1, 0}.span() == 1));
  CHECK((WindowSpec{10, 1, 1, 1}.span() == 11));
  CHECK((WindowSpec{4, 3, 2, 2}.span() == 16));  // (4 - 1 + 2) * 3 + 1
  CHECK(SampleIndex::count_windows(16, WindowSpec{4, 3, 2, 2}) == 1);
  CHECK(SampleIndex::count_windows(15, WindowSpec{4, 3, 2, 2}) == 0);
  CHECK(throws_argument_error([] { SampleIndex({10}, WindowSpec{0, 1, 1, 0}); }, "WindowSpec.window"));
  CHECK(throws_argument_error([] { SampleIndex({10}, WindowSpec{2, 1, 0, 0}); }, "WindowSpec.stride"));
}

// `n` int32 sequences of the given lengths over `values` (kept alive by the caller).
static std::vector<Series> int_sequences(std::vector<int32_t>& values, const std::vector<int64_t>& lengths) {
  int64_t total = 0;
  for (int64_t len : lengths) total += len;
  values.resize(static_cast<size_t>(total));
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<int32_t>(i) + 1;
  std::vector<Series> out;
  int64_t offset = 0;
  for (int64_t len : lengths) {
    Series s;
    s.data = reinterpret_cast<const std::byte*>(values.data() + offset);
    s.length = len;
    s.dtype = DType::Int32;
    out.push_back(s);
    offset += len;
  }
  return out;
}

static void sequence_data_make_checks_its_parts() {
  std::vector<int32_t> values;
  const std::vector<Series> seqs = int_sequences(values, {3, 5, 2});
  auto d = SequenceData::make(seqs, {}, Series{}, {2, 0});
  CHECK(d->count() == 2 && d->real(0) == 2 && d->real(1) == 0);
  CHECK((d->lengths() == std::vector<int64_t>{2, 3}));
  CHECK(d->total_steps() == 5);
  CHECK(d->units(false, 0) == 2 && d->units(true, 2) == 3 && d->units(true, 8) == 1);
  CHECK(SequenceData::make(seqs, {}, Series{}, {})->count() == 3);
  CHECK(throws_argument_error([&] { SequenceData::make(seqs, {}, Series{}, {0, 3}); }, "keep: no sequence 3"));
  CHECK(throws_argument_error([&] { SequenceData::make(seqs, {}, Series{}, {-1}); }, "keep: no sequence -1"));
  CHECK(throws_argument_error([&] { SequenceData::make(seqs, {seqs[0]}, Series{}, {}); }, "step targets"));
  CHECK(throws_argument_error([&] { d->units(true, 0); }, "max_len"));
}

static int64_t product_of(const std::vector<int64_t>& shape) {
  int64_t p = 1;
  for (int64_t d : shape) p *= d;
  return p;
}

// Mask and lengths come with every batch of whole sequences, also one no step of which is
// padding; packed batches add their ids and cu_seqlens (not per row).
static void sequence_blocks_always_carry_mask_and_lengths() {
  std::vector<int32_t> values;
  auto data = SequenceData::make(int_sequences(values, {4, 4, 4, 4, 2, 7}), {}, Series{}, {});
  OutputSpec out;
  out.x_dtype = DType::Int32;
  PadSpec pad{0, 1, false, false, 0.0};
  // Unshuffled batches of two: [4, 4] and [4, 4] fill every step; [2, 7] is padded.
  auto padded = std::make_shared<SequenceBlocks>(data, order_of(2), PackSpec{}, pad, out, run_of(0));
  CHECK(padded->num_blocks() == 3);
  for (int64_t k = 0; k < 3; ++k) {
    const Block b = padded->build(k);
    CHECK(b.failed_at < 0);
    std::vector<std::string> names;
    for (const auto& f : b.fields) names.push_back(f.first);
    CHECK((names == std::vector<std::string>{"x", "mask", "lengths"}));
    const Array& mask = *b.find(field::kMask);
    const Array& lengths = *b.find(field::kLengths);
    const int64_t L = k < 2 ? 4 : 7;
    CHECK(mask.dtype == DType::Bool && (mask.shape == std::vector<int64_t>{2, L}) && mask.per_row);
    CHECK(lengths.dtype == DType::Int64 && (lengths.shape == std::vector<int64_t>{2}) && lengths.per_row);
    const auto* m = field_data<bool>(b, field::kMask);
    const auto* len = field_data<int64_t>(b, field::kLengths);
    int64_t real = 0;
    for (int64_t i = 0; i < 2 * L; ++i) real += m[i] ? 1 : 0;
    CHECK(real == len[0] + len[1]);
    if (k < 2) CHECK(real == 2 * L);  // nothing padded, mask and lengths all the same
  }
  PackSpec pack;
  pack.pack = true;
  pad.max_len = 5;
  auto packed = std::make_shared<SequenceBlocks>(data, order_of(2), pack, pad, out, run_of(0));
  CHECK(packed->sizes().per_rank == 5);  // 25 steps in rows of 5
  const Block b = packed->build(0);
  std::vector<std::string> names;
  for (const auto& f : b.fields) names.push_back(f.first);
  CHECK((names == std::vector<std::string>{"x", "mask", "segment_ids", "position_ids", "lengths", "cu_seqlens"}));
  CHECK(!b.find(field::kCuSeqlens)->per_row && b.find(field::kSegmentIds)->per_row);
  // Indices only: the pieces table instead of the steps, and the row info as usual.
  RunSpec indices = run_of(0);
  indices.indices_only = true;
  const Block p = std::make_shared<SequenceBlocks>(data, order_of(2), pack, pad, out, indices)->build(0);
  names.clear();
  for (const auto& f : p.fields) names.push_back(f.first);
  CHECK((names == std::vector<std::string>{"pieces", "lengths", "cu_seqlens"}));
  const Array& pieces = *p.find(field::kPieces);
  CHECK(!pieces.per_row && pieces.dtype == DType::Int64 && pieces.shape.size() == 2 && pieces.shape[1] == 6);
  CHECK(pieces.shape[0] == product_of(b.find(field::kCuSeqlens)->shape) - 1);  // one piece per segment
  // Validation names the field.
  CHECK(throws_argument_error([&] { SequenceBlocks(data, order_of(2, false, 0, 0, false, 2, 2), pack, pad, out, run_of(0)); },
                              "OrderSpec.rank"));
  pad.max_len = 0;
  CHECK(throws_argument_error([&] { SequenceBlocks(data, order_of(2), pack, pad, out, run_of(0)); }, "PadSpec.max_len"));
  out.x_feat = {3};
  CHECK(throws_argument_error([&] { SequenceBlocks(data, order_of(2), PackSpec{}, pad, out, run_of(0)); },
                              "OutputSpec.x_feat (3,) holds 3 elements, but a step of the inputs has 1"));
}

// Window blocks: x and y by name (no y without targets), or the starts alone with indices_only.
static void window_blocks_fields() {
  std::vector<float> values(50);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  Series s;
  s.data = reinterpret_cast<const std::byte*>(values.data());
  s.length = 50;
  OutputSpec out;
  auto with_targets = std::make_shared<Assembler>(std::vector<Series>{s}, std::vector<Series>{s},
                                                  WindowSpec{4, 1, 1, 1}, out);
  auto without = std::make_shared<Assembler>(std::vector<Series>{s}, std::vector<Series>{}, WindowSpec{4, 1, 1, 0},
                                             out);
  CHECK(with_targets->units() == 46 && without->units() == 47 && with_targets->span() == 5);
  Block b = WindowBlocks(with_targets, order_of(8), run_of(0, 2)).build(0);
  CHECK(b.fields.size() == 2 && b.fields[0].first == "x" && b.fields[1].first == "y");
  CHECK((b.find(field::kX)->shape == std::vector<int64_t>{16, 4}) && (b.find(field::kY)->shape == std::vector<int64_t>{16, 1}));
  CHECK(field_data<float>(b, field::kY)[0] == 4.0f);
  b = WindowBlocks(without, order_of(8), run_of(0, 2)).build(0);
  CHECK(b.fields.size() == 1 && b.find(field::kY) == nullptr);
  RunSpec indices = run_of(0, 2);
  indices.indices_only = true;
  b = WindowBlocks(with_targets, order_of(8), indices).build(2);  // batches 4 and 5: samples 32..45
  CHECK(b.fields.size() == 1 && b.fields[0].first == "starts");
  const Array& starts = *b.find(field::kStarts);
  CHECK(starts.dtype == DType::Int64 && (starts.shape == std::vector<int64_t>{14}) && starts.per_row);
  CHECK(field_data<int64_t>(b, field::kStarts)[13] == 45);
  RunSpec late = run_of(0);
  late.first_batch = 7;  // the epoch has 6
  CHECK(throws_argument_error([&] { WindowBlocks(with_targets, order_of(8), late); }, "RunSpec.first_batch"));
  out.x_feat = {2};
  CHECK(throws_argument_error([&] { Assembler({s}, {}, WindowSpec{4, 1, 1, 0}, out); }, "OutputSpec.x_feat"));
}

// Ranges read as Python's slicing reads them, per series.
static void window_ranges_follow_slicing() {
  CHECK(slice_steps(10, -3, kSeriesEnd).lo == 7 && slice_steps(10, -3, kSeriesEnd).hi == 10);
  CHECK(slice_steps(10, 0, -4).hi == 6 && slice_steps(10, -20, 40).lo == 0 && slice_steps(10, -20, 40).hi == 10);
  CHECK(slice_steps(10, 12, kSeriesEnd).lo == 10 && slice_steps(3, 0, -5).hi == 0);
  WindowSpec spec{2, 1, 1, 1};
  spec.start_index = -6;
  spec.end_index = -1;  // series of 10: steps [4, 9) hold 3 windows of span 3; of 4: none ([0, 3) holds 1)
  SampleIndex idx({10, 4}, spec);
  CHECK(idx.size() == 4 && idx.locate(0).start == 4 && idx.locate(3).series == 1 && idx.locate(3).start == 0);
  WindowSpec shifted{3, 2, 1, 0};
  shifted.target_shift = 2;
  CHECK(shifted.span() == 9 && shifted.target_steps() == 3 && shifted.target_offset() == 2);
  shifted.horizon = 1;
  CHECK(throws_argument_error([&] { shifted.validate(); }, "target_shift and horizon"));
}

// Every field of a window sample, written in one pass: values checked by hand.
static void window_extras_by_hand() {
  std::vector<float> x(12), cov(24), known(12);
  for (size_t i = 0; i < 12; ++i) {
    x[i] = static_cast<float>(i);
    known[i] = 100.0f + static_cast<float>(i);
    cov[2 * i] = static_cast<float>(i);
    cov[2 * i + 1] = -static_cast<float>(i);
  }
  x[5] = std::nanf("");
  std::vector<double> statics{7.0, 8.0};
  auto series_of = [](const void* data, int64_t length, int64_t elems, DType dtype) {
    Series s;
    s.data = static_cast<const std::byte*>(data);
    s.length = length;
    s.row_elems = elems;
    s.dtype = dtype;
    return s;
  };
  const Series xs = series_of(x.data(), 12, 1, DType::Float32);
  WindowExtras extras;
  extras.covariates = {series_of(cov.data(), 12, 2, DType::Float32)};
  extras.covariates_out.feat = {2};
  extras.known = {series_of(known.data(), 12, 1, DType::Float32)};
  extras.statics = {series_of(statics.data(), 1, 2, DType::Float64)};
  extras.scaling = Scaling::Mean;
  OutputSpec out;
  out.mask_non_finite = true;
  out.with_index = true;
  out.static_out.dtype = DType::Float32;
  out.static_out.feat = {2};
  WindowSpec spec{3, 1, 1, 2};  // window 3, horizon 2
  Assembler a({xs}, {xs}, spec, out, extras);
  std::vector<std::string> names;
  for (const auto& l : a.layouts()) names.push_back(l.name);
  CHECK((names == std::vector<std::string>{"x", "observed", "y", "y_observed", "covariates", "known", "static", "series",
                                           "start", "scale"}));
  std::vector<std::vector<std::byte>> buffers;
  std::vector<std::byte*> dst;
  for (const auto& l : a.layouts()) buffers.emplace_back(l.sample_bytes);
  for (auto& buffer : buffers) dst.push_back(buffer.data());
  a.fill_sample(3, dst.data());  // the window of steps 3, 4, 5 (5 is NaN); targets 6, 7
  auto at = [&](size_t field, size_t i) { return reinterpret_cast<const float*>(buffers[field].data())[i]; };
  auto flag = [&](size_t field, size_t i) { return reinterpret_cast<const bool*>(buffers[field].data())[i]; };
  const float scale = 3.5f;  // the mean absolute value of the finite steps 3 and 4
  CHECK(at(9, 0) == scale);
  CHECK(at(0, 0) == static_cast<float>(3.0 / 3.5) && at(0, 1) == static_cast<float>(4.0 / 3.5) && at(0, 2) == 0.0f);
  CHECK(flag(1, 0) && flag(1, 1) && !flag(1, 2));
  CHECK(at(2, 0) == static_cast<float>(6.0 / 3.5) && flag(3, 0) && flag(3, 1));
  CHECK(at(4, 0) == 3.0f && at(4, 1) == -3.0f && at(4, 5) == -5.0f);
  CHECK(at(5, 0) == 103.0f && at(5, 4) == 107.0f);  // known: the window's steps, then to the last target
  CHECK(at(6, 0) == 7.0f && at(6, 1) == 8.0f);
  CHECK(reinterpret_cast<const int64_t*>(buffers[7].data())[0] == 0 && reinterpret_cast<const int64_t*>(buffers[8].data())[0] == 3);
  // check_finite="skip" leaves out every window reading step 5 (inputs or targets): starts 1..5.
  out.mask_non_finite = false;
  extras.scaling = Scaling::None;
  Assembler skipping({xs}, {xs}, spec, out, extras);
  const int64_t before = skipping.num_samples();  // starts 0..7
  skipping.exclude_non_finite(2);
  CHECK(before == 8 && skipping.num_samples() == 3);
  // Statistics never come from a NaN: they fail naming it, or skip it.
  CHECK(throws_argument_error([&] { compute_moments({xs}, 0, kSeriesEnd, NonFinite::Fail); }, "series 0, step 5"));
  const Moments m = compute_moments({xs}, 4, -5, NonFinite::Skip);  // steps 4, 6 (5 is NaN)
  CHECK(m.mean[0] == 5.0 && m.std[0] == 1.0 && m.count == 3);
  // Fields beside x must be aligned and shaped.
  extras.known = {series_of(known.data(), 11, 1, DType::Float32)};
  CHECK(throws_argument_error([&] { Assembler({xs}, {xs}, spec, out, extras); }, "the known fields of series 0 have 11 steps"));
}

// A mixture's stream keeps every component within one item of its quota, at every position.
static void mixtures_keep_their_quotas() {
  MixSpec spec;
  spec.weights = {0.3, 1.7, 0.45, 0.0};
  spec.first = {0, 10, 40, 90};
  spec.count = {10, 30, 50, 5};
  spec.keys = {1, 2, 3, 4};
  spec.base = {0, 0, 0, 0};
  spec.first_series = {0, 1, 2, 3};
  MixOrder mix(spec, true);
  const int64_t n = 200000;  // past several checkpoints
  std::vector<int64_t> item(n), component(n);
  mix.items(0, 1, n, item.data(), component.data());
  std::vector<int64_t> counts(4, 0);
  bool within = true;
  for (int64_t i = 0; i < n; ++i) {
    ++counts[static_cast<size_t>(component[static_cast<size_t>(i)])];
    for (size_t c = 0; c < 4; ++c) {
      const double quota = static_cast<double>(i + 1) * spec.weights[c] / 2.45;
      within = within && std::abs(static_cast<double>(counts[c]) - quota) < 1.0;
    }
  }
  CHECK(within && counts[3] == 0);
  CHECK(mix.counts_at(n) == counts);
  // Seeking anywhere gives what the stream gave there, on every rank's stride.
  std::vector<int64_t> some(7), comp(7);
  mix.items(131071, 3, 7, some.data(), comp.data());
  for (int64_t j = 0; j < 7; ++j) CHECK(some[static_cast<size_t>(j)] == item[static_cast<size_t>(131071 + 3 * j)]);
  // Component 1's items over one pass: each of its 30 once.
  std::set<int64_t> first_pass;
  for (int64_t i = 0, seen = 0; i < n && seen < 30; ++i) {
    if (component[static_cast<size_t>(i)] == 1) {
      first_pass.insert(item[static_cast<size_t>(i)]);
      ++seen;
    }
  }
  CHECK(first_pass.size() == 30 && *first_pass.begin() == 10 && *first_pass.rbegin() == 39);
  spec.weights = {0, 0, 0, 0};
  CHECK(throws_argument_error([&] { MixOrder(spec, false); }, "every weight is 0"));
}

// An elastic resume: the ranks share what the pass has left after another configuration's offset.
static void elastic_resume_shares_the_rest_of_a_pass() {
  OrderSpec order = order_of(5, true, 7, 0, false, 1, 3);
  order.resume_step = 2;
  order.resume_pass = 2;
  order.resume_offset = 40;
  CHECK(pass_share_size(order, 100, 2) == 20);  // 60 left: 20 a rank
  CHECK(pass_share_size(order, 100, 3) == 33);  // a later pass: as usual (100 / 3, the rest does not fit)
  PassOrder resumed(order, 100, 2);
  Permutation perm(100, 7, 2);
  CHECK(resumed.sample_at(0) == static_cast<int64_t>(perm(41)) && resumed.sample_at(19) == static_cast<int64_t>(perm(98)));
  CHECK(epoch_sizes(100, order, 2).batches_per_epoch == 4 && epoch_sizes(100, order, 3).per_rank == 33);
}

// Padded whole sequences resume the same way: the plan of the resumed pass deals the rank the
// positions offset + rank, offset + rank + world_size, ... of the pass's order; other passes whole.
static void elastic_resume_plans_the_rest_of_a_pass_of_sequences() {
  const std::vector<int64_t> lengths(50, 3);
  OrderSpec order = order_of(4, true, 9, 0, false, 2, 3);
  order.resume_step = 1;
  order.resume_pass = 1;
  order.resume_offset = 20;
  const PassPlan resumed = PassPlan::build(lengths, order, PackSpec{}, PadSpec{}, 1);
  const Permutation perm(50, 9, 1);
  CHECK(resumed.seqs().size() == 10 && resumed.num_batches() == 3);  // 30 left: 10 a rank
  for (int64_t q = 0; q < 10; ++q) {
    CHECK(resumed.seqs()[static_cast<size_t>(q)] == static_cast<int64_t>(perm(static_cast<uint64_t>(20 + q * 3 + 2))));
  }
  const PassPlan later = PassPlan::build(lengths, order, PackSpec{}, PadSpec{}, 2);
  CHECK(later.seqs().size() == 16 && later.seqs()[0] == static_cast<int64_t>(Permutation(50, 9, 2)(2)));
}

// Back-to-back packed rows too: a pass's rows depend on its order alone, and the resumed pass's
// plan deals the rank rows offset + rank, offset + rank + world_size, ...
static void elastic_resume_plans_the_rest_of_a_pass_of_packed_rows() {
  const std::vector<int64_t> lengths(50, 3);  // 150 steps: 38 rows of 4
  OrderSpec order = order_of(4, true, 9, 0, false, 2, 3);
  order.resume_step = 1;
  order.resume_pass = 1;
  order.resume_offset = 20;
  PackSpec pack;
  pack.pack = true;
  PadSpec pad;
  pad.max_len = 4;
  const PassPlan whole = PassPlan::build(lengths, order_of(1, true, 9), pack, pad, 1);
  const PassPlan resumed = PassPlan::build(lengths, order, pack, pad, 1);
  CHECK(whole.num_rows() == 38 && resumed.num_rows() == 6 && resumed.num_batches() == 2);  // 18 left: 6 a rank
  std::vector<PlanPiece> a, b;
  for (int64_t q = 0; q < 6; ++q) {
    resumed.row_pieces(q, a);
    whole.row_pieces(20 + q * 3 + 2, b);
    CHECK(a.size() == b.size());
    for (size_t k = 0; k < a.size() && k < b.size(); ++k) {
      CHECK(a[k].seq == b[k].seq && a[k].first == b[k].first && a[k].count == b[k].count);
    }
  }
  const PassPlan later = PassPlan::build(lengths, order, pack, pad, 2);
  CHECK(later.num_rows() == 12 && later.pass_row(0) == 2);
  order.resume_offset = 38;  // the pass read to its end
  CHECK(PassPlan::build(lengths, order, pack, pad, 1).num_rows() == 0);
  // Best-fit rows likewise: pools of the pass's order, whatever world_size is.
  pack.best_fit = true;
  pack.bucket_pool = 2;
  order.resume_offset = 10;
  const PassPlan fit_whole = PassPlan::build(lengths, order_of(1, true, 9), pack, pad, 1);
  const PassPlan fit = PassPlan::build(lengths, order, pack, pad, 1);
  const int64_t K = fit_whole.pass_units();
  CHECK(K == fit_whole.num_rows() && fit.pass_units() == K && fit.num_rows() == (K - 10) / 3);
  for (int64_t q = 0; q < fit.num_rows(); ++q) {
    fit.row_pieces(q, a);
    fit_whole.row_pieces(10 + q * 3 + 2, b);
    CHECK(a.size() == b.size());
    for (size_t k = 0; k < a.size() && k < b.size(); ++k) {
      CHECK(a[k].seq == b[k].seq && a[k].first == b[k].first && a[k].count == b[k].count);
    }
  }
}

// Token budgets cut a pass into batches by batch_tokens alone: the resumed pass's plan deals the
// rank batches offset + rank, offset + rank + world_size, ...; virtual epochs resumed so count
// their stream of batches from the resumed pass.
static void elastic_resume_plans_the_rest_of_a_pass_of_token_batches() {
  const std::vector<int64_t> lengths(40, 3);
  PackSpec pack;
  pack.batch_tokens = 6;  // two sequences a batch: 20 batches a pass
  PadSpec pad;
  const PassPlan whole = PassPlan::build(lengths, order_of(1, true, 9), pack, pad, 1);
  OrderSpec order = order_of(1, true, 9, 4, false, 1, 3);
  order.resume_step = 5;
  order.resume_pass = 1;
  order.resume_offset = 7;
  const PassPlan resumed = PassPlan::build(lengths, order, pack, pad, 1);
  CHECK(whole.pass_units() == 20 && resumed.pass_units() == 20 && resumed.num_batches() == 4);  // 13 left: 4 a rank
  for (int64_t q = 0; q < 4; ++q) {
    const int64_t g = 7 + q * 3 + 1;
    CHECK(resumed.batch_start(q + 1) - resumed.batch_start(q) == 2);
    CHECK(resumed.seqs()[static_cast<size_t>(resumed.batch_start(q))] == whole.seqs()[static_cast<size_t>(whole.batch_start(g))]);
  }
  const PassSizes sizes(lengths, order, pack, pad);
  CHECK(sizes.batches(1) == 4 && sizes.batches(2) == 6 && sizes.units(2) == 20);
  const StreamPosition a = sizes.locate(3, false), b = sizes.locate(4, false), c = sizes.locate(11, false);
  CHECK(a.pass == 1 && a.index == 3 && b.pass == 2 && b.index == 0 && c.pass == 3 && c.index == 1);
}

// Bucketed batches are cut from each rank's own length-sorted share, so what old ranks read is no
// prefix of the pass: the resumed pass's plan buckets the rank's share of what they left (in the
// pass's order), and virtual epochs count that pass's batches, then whole passes'.
static void elastic_resume_plans_the_rest_of_a_bucketed_pass() {
  std::vector<int64_t> lengths;
  for (int64_t i = 0; i < 37; ++i) lengths.push_back(1 + (i * 7) % 11);
  PackSpec pack;
  pack.bucket = true;
  pack.bucket_pool = 2;
  // The old configuration: 2 ranks of batch 3, each read 2 of its batches of pass 1.
  std::set<int64_t> read;
  for (int64_t r = 0; r < 2; ++r) {
    const PassPlan old = PassPlan::build(lengths, order_of(3, true, 9, 0, false, r, 2), pack, PadSpec{}, 1);
    for (int64_t i = 0; i < old.batch_start(2); ++i) read.insert(old.seqs()[static_cast<size_t>(i)]);
  }
  std::vector<int64_t> left;
  const Permutation perm(37, 9, 1);
  for (uint64_t q = 0; q < 37; ++q) {
    if (read.count(static_cast<int64_t>(perm(q))) == 0) left.push_back(static_cast<int64_t>(perm(q)));
  }
  CHECK(read.size() == 12);
  OrderSpec order = order_of(4, true, 9, 0, false, 1, 3);
  CHECK(unread_sequences(lengths, order, pack, 1, {PassRead{2, 3, 2}}) == left);
  // A state counts what was read from the batches' sizes alone: the same number, whatever the
  // configurations, drop_last and shuffle, also in turn.
  for (bool drop_last : {false, true}) {
    for (int64_t w = 1; w <= 4; ++w) {
      for (int64_t b = 1; b <= 5; ++b) {
        OrderSpec o = order_of(2, w % 2 == 0, 5, 0, drop_last);
        const int64_t nb = pass_batches(order_of(b, false, 0, 0, drop_last, 0, w), 37, 0);
        for (int64_t k = 0; k <= nb; ++k) {
          std::vector<PassRead> reads{PassRead{w, b, k}};
          if (unread_sequences(lengths, o, pack, 3, reads).size() >= 4) reads.push_back(PassRead{2, 2, 1});
          const int64_t unread = static_cast<int64_t>(unread_sequences(lengths, o, pack, 3, reads).size());
          CHECK(sequences_read(37, o, 3, reads) == 37 - unread);
        }
      }
    }
  }
  CHECK(throws_argument_error([&] { unread_sequences(lengths, order, pack, 1, {PassRead{2, 3, 7}}); },
                              "read 7 bucketed batches of 3"));  // each rank has 6 batches of 3
  order.resume_step = 1;
  order.resume_pass = 1;
  order.resume_offset = 12;
  order.resume_reads = {PassRead{2, 3, 2}};
  const PassPlan resumed = PassPlan::build(lengths, order, pack, PadSpec{}, 1);
  std::vector<int64_t> share;  // positions 1, 4, 7, ... of what was left: 25 left, 8 a rank
  for (size_t q = 1; q < left.size(); q += 3) share.push_back(left[q]);
  CHECK(share.size() == 8 && resumed.num_batches() == 2);
  std::vector<int64_t> got(resumed.seqs());
  std::sort(got.begin(), got.end());
  std::sort(share.begin(), share.end());
  CHECK(got == share);
  for (int64_t g = 0; g < 2; ++g) {  // each batch sorted by length
    for (int64_t i = resumed.batch_start(g) + 1; i < resumed.batch_start(g + 1); ++i) {
      CHECK(lengths[resumed.seqs()[i - 1]] <= lengths[resumed.seqs()[i]]);
    }
  }
  order.resume_offset = 11;  // disagrees with the reads
  CHECK(throws_argument_error([&] { PassPlan::build(lengths, order, pack, PadSpec{}, 1); },
                              "disagrees with resume_reads"));
  // Virtual epochs of 3 batches resumed at step 4: 2 batches of pass 1 left, then 3 of each pass.
  order.resume_offset = 12;
  order.steps_per_epoch = 3;
  order.resume_step = 4;
  const StreamPosition a = locate_batch(order, 1, 1, 37), b = locate_batch(order, 2, 0, 37), c = locate_batch(order, 3, 0, 37);
  CHECK(a.pass == 1 && a.index == 0 && b.pass == 2 && b.index == 0 && c.pass == 3 && c.index == 0);
}

// The tuner's rules on made-up windows: every decision here is one the comments in tuner.hpp
// promise, so a changed rule shows up as a failed check.
static Tuner tuner_of(bool threads, bool prefetch, int max_threads, int busy, int max_prefetch, Shape start,
                      int window = 4) {
  TuneLimits l;
  l.auto_threads = threads;
  l.auto_prefetch = prefetch;
  l.max_threads = max_threads;
  l.busy_threads = busy;
  l.max_prefetch = max_prefetch;
  l.window = window;
  return Tuner(l, start);
}

// One window of `n` hand-overs, each `step` seconds apart, `wait` of them waited for, `full` of
// them finding the ring full. True when the last one changed the shape.
static bool feed_window(Tuner& t, int n, double step, double wait, int waits, int full) {
  bool changed = false;
  for (int i = 0; i < n; ++i) {
    Handover h;
    h.interval_s = step;
    h.waited_s = i < waits ? wait : 0.0;
    h.ring_full = i >= n - full;
    const bool c = t.observe(h);
    if (i < n - 1) CHECK(!c);  // decisions come only at the end of a window
    changed = c;
  }
  return changed;
}

static void tuner_follows_its_rules() {
  // Explicit values: nothing the consumer does changes them.
  Tuner fixed = tuner_of(false, false, 8, 7, 16, Shape{3, 5});
  for (int i = 0; i < 10; ++i) CHECK(!feed_window(fixed, 4, 0.003, 0.003, 4, 0));
  for (int i = 0; i < 10; ++i) CHECK(!feed_window(fixed, 4, 0.003, 0.0, 0, 4));
  CHECK(fixed.shape() == (Shape{3, 5}));
  CHECK(!fixed.tuning());

  // A tuned ring starts with two blocks per starting worker, within its budget.
  CHECK(tuner_of(true, true, 4, 3, 16, Shape{1, 1}).shape() == (Shape{1, 2}));
  CHECK(tuner_of(true, true, 4, 3, 3, Shape{2, 1}).shape() == (Shape{2, 3}));
  CHECK(tuner_of(true, true, 4, 3, 16, Shape{9, 40}).shape() == (Shape{4, 16}));  // clamped to the limits

  // A consumer that mostly waits (90%), the ring never full: a worker more per window
  // up to max_threads, two ring blocks each (up to the budget), then nothing more to add.
  Tuner t = tuner_of(true, true, 4, 3, 6, Shape{1, 2});
  CHECK(feed_window(t, 4, 0.001, 0.0009, 4, 0));
  CHECK(t.shape() == (Shape{2, 4}));
  CHECK(feed_window(t, 4, 0.001, 0.0009, 4, 0));
  CHECK(t.shape() == (Shape{3, 6}));
  CHECK(feed_window(t, 4, 0.001, 0.0009, 4, 0));
  CHECK(t.shape() == (Shape{4, 6}));
  CHECK(!feed_window(t, 4, 0.001, 0.0009, 4, 0));
  CHECK(t.shape() == (Shape{4, 6}));

  // A consumer that computes most of the time and still waits (7.5%): workers only up to
  // busy_threads (its own core stays its own); at that cap the ring grows instead.
  Tuner busy = tuner_of(true, true, 2, 1, 8, Shape{1, 2});
  CHECK(feed_window(busy, 4, 0.003, 0.0009, 1, 0));
  CHECK(busy.shape() == (Shape{1, 3}));
  // ... and once it waits more than a tenth of its time (15%) in two windows in a row, it
  // lends its core to one more worker (a single such window is a burst, not a need).
  CHECK(feed_window(busy, 4, 0.003, 0.0018, 1, 0));
  CHECK(busy.shape() == (Shape{1, 4}));
  CHECK(feed_window(busy, 4, 0.003, 0.0018, 1, 0));
  CHECK(busy.shape() == (Shape{2, 4}));
  // A window between that waits less breaks the run.
  Tuner bursts = tuner_of(true, true, 2, 1, 8, Shape{1, 2});
  for (int i = 0; i < 3; ++i) {
    feed_window(bursts, 4, 0.003, 0.0018, 1, 0);
    feed_window(bursts, 4, 0.003, 0.0009, 1, 0);
  }
  CHECK(bursts.shape().threads == 1);

  // A wait under 2% of the window's time is not starving: nothing changes.
  Tuner calm = tuner_of(true, true, 4, 3, 8, Shape{1, 2});
  CHECK(!feed_window(calm, 4, 0.003, 0.0002, 1, 0));
  CHECK(calm.shape() == (Shape{1, 2}));

  // Starved though the ring was full at some hand-over: a burst, so a deeper ring, not a worker.
  Tuner bursty = tuner_of(true, true, 4, 3, 8, Shape{1, 2});
  CHECK(feed_window(bursty, 4, 0.003, 0.002, 1, 2));
  CHECK(bursty.shape() == (Shape{1, 3}));
  // ... but a ring full at fewer than a quarter of them is a ring the workers cannot keep full.
  Tuner behind = tuner_of(true, true, 4, 3, 8, Shape{1, 2}, 8);
  CHECK(feed_window(behind, 8, 0.001, 0.0009, 7, 1));
  CHECK(behind.shape() == (Shape{2, 4}));

  // Surplus (no wait, ring full): a worker retires after two such windows, never the last.
  Tuner spare = tuner_of(true, true, 4, 3, 8, Shape{3, 6});
  CHECK(!feed_window(spare, 4, 0.003, 0.0, 0, 4));
  CHECK(feed_window(spare, 4, 0.003, 0.0, 0, 4));
  CHECK(spare.shape() == (Shape{2, 6}));  // the ring stays: its buffers are pooled anyway
  // A window that is neither starved nor surplus breaks the run of calm windows.
  CHECK(!feed_window(spare, 4, 0.003, 0.0, 0, 4));
  CHECK(!feed_window(spare, 4, 0.003, 0.0, 0, 2));
  CHECK(!feed_window(spare, 4, 0.003, 0.0, 0, 4));
  CHECK(feed_window(spare, 4, 0.003, 0.0, 0, 4));
  CHECK(spare.shape() == (Shape{1, 6}));
  for (int i = 0; i < 2; ++i) CHECK(!feed_window(spare, 4, 0.003, 0.0, 0, 4));
  CHECK(spare.shape().threads == 1);
  // Undone soon after (starved within four windows): it comes back, and retiring now takes four
  // surplus windows in a row.
  CHECK(feed_window(spare, 4, 0.001, 0.0009, 4, 0));
  CHECK(spare.shape().threads == 2);
  for (int i = 0; i < 3; ++i) CHECK(!feed_window(spare, 4, 0.003, 0.0, 0, 4));
  CHECK(feed_window(spare, 4, 0.003, 0.0, 0, 4));
  CHECK(spare.shape().threads == 1);

  // Only what is automatic changes: explicit threads with a tuned ring, and the other way round.
  Tuner ring_only = tuner_of(false, true, 4, 3, 8, Shape{2, 2});
  CHECK(ring_only.shape() == (Shape{2, 4}));
  CHECK(feed_window(ring_only, 4, 0.001, 0.0009, 4, 0));
  CHECK(ring_only.shape() == (Shape{2, 5}));
  for (int i = 0; i < 4; ++i) feed_window(ring_only, 4, 0.003, 0.0, 0, 4);
  CHECK(ring_only.shape().threads == 2);
  Tuner threads_only = tuner_of(true, false, 4, 3, 8, Shape{1, 3});
  CHECK(feed_window(threads_only, 4, 0.001, 0.0009, 4, 0));
  CHECK(threads_only.shape() == (Shape{2, 3}));
  CHECK(feed_window(threads_only, 4, 0.001, 0.0009, 4, 2));  // a burst, but the ring is fixed: a worker
  CHECK(threads_only.shape() == (Shape{3, 3}));

  // force() sets the shape within the limits, and tuning goes on from there.
  Tuner forced = tuner_of(true, true, 4, 3, 8, Shape{1, 2});
  forced.force(Shape{9, 20});
  CHECK(forced.shape() == (Shape{4, 8}));
  forced.force(Shape{0, 0});
  CHECK(forced.shape() == (Shape{1, 1}));
}

// A tuned pipeline hands over every block in order however its shape changes: the tuner's own
// decisions (a consumer that drains fast, then one that sleeps, windows of two hand-overs) and
// shapes forced from another thread at random moments. Under `make tsan` this is also the
// check that the shape, the parked workers and the hand-over share no unguarded state.
static void tuned_pipeline_delivers_in_order() {
  std::vector<float> data(30000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>(i);
  auto assembler = float_assembler(data, 64);
  const int64_t n = assembler->num_samples();
  for (int round = 0; round < 6; ++round) {
    RunSpec run = run_of(round, 2, 1, 2);
    run.auto_threads = true;
    run.auto_prefetch = round % 3 != 2;
    run.max_threads = 4;
    run.busy_threads = 3;
    run.max_prefetch = 6;
    run.tune_window = 2;
    auto builder = std::make_shared<WindowBlocks>(assembler, order_of(16, true, 21), run);
    Pipeline pipe(builder, run.tune_limits(), run.start());
    CHECK(pipe.shape() == (Shape{1, run.auto_prefetch ? 2 : 2}));
    std::atomic<bool> done{false};
    std::thread forcer;
    if (round % 2 == 1) {
      forcer = std::thread([&] {
        for (int i = 0; !done.load(); ++i) {
          pipe.retune(Shape{1 + i % 4, 1 + (i * 5) % 6});
          std::this_thread::sleep_for(std::chrono::microseconds(300));
        }
      });
    }
    Permutation perm(static_cast<uint64_t>(n), 21, static_cast<uint64_t>(round));
    std::set<int> threads_seen;
    Block b;
    int64_t position = 0, blocks = 0;
    while (pipe.next(&b, std::chrono::milliseconds(1000)) == Pipeline::Status::Ready) {
      const auto* x = field_data<double>(b, field::kX);
      for (int64_t i = 0; i < b.num_samples; ++i, ++position) {
        CHECK(x[i * 64] == static_cast<double>(perm(static_cast<uint64_t>(position))));
      }
      CHECK(b.threads >= 1 && b.threads <= 4 && b.prefetch >= 1 && b.prefetch <= 6);
      threads_seen.insert(b.threads);
      // Drain fast for a while (the tuner adds workers), then sleep between blocks (it retires them).
      if (++blocks % 200 > 120) std::this_thread::sleep_for(std::chrono::microseconds(400));
    }
    done = true;
    if (forcer.joinable()) forcer.join();
    CHECK(position == n);
    if (round % 2 == 1) CHECK(threads_seen.size() > 1);  // forced shapes reached the hand-over
  }
  // Closing with parked workers ends them all (no hang), mid-epoch and before any block.
  for (int before : {0, 3}) {
    RunSpec run = run_of(0, 1, 1, 2);
    run.auto_threads = run.auto_prefetch = true;
    run.max_threads = 4;
    run.busy_threads = 3;
    run.max_prefetch = 4;
    Pipeline pipe(std::make_shared<WindowBlocks>(assembler, order_of(8), run), run.tune_limits(), run.start());
    Block b;
    for (int i = 0; i < before; ++i) CHECK(pipe.next(&b, std::chrono::milliseconds(1000)) == Pipeline::Status::Ready);
    pipe.close();
    CHECK(pipe.next(&b, std::chrono::milliseconds(1)) == Pipeline::Status::Finished);
  }
}

// A builder that throws (out of memory, say) gives a failed block at its place in the order, on a
// worker thread and in the consumer alike, instead of ending the process.
static void a_throwing_builder_gives_a_failed_block() {
  struct Throwing : BlockBuilder {
    int64_t blocks;
    explicit Throwing(int64_t n) : blocks(n) {}
    int64_t num_blocks() const override { return blocks; }
    Block build(int64_t k) const override {
      if (k == 2 || blocks == 1) throw std::bad_alloc();
      Block b;
      b.first_batch = k;
      b.num_batches = 1;
      return b;
    }
  };
  for (int64_t blocks : {1, 5}) {  // one block: built by the consumer; five: by the workers
    Pipeline pipe(std::make_shared<Throwing>(blocks), 2, 2);
    Block b;
    int64_t k = 0;
    while (pipe.next(&b, std::chrono::milliseconds(1000)) == Pipeline::Status::Ready) {
      const bool should_fail = k == 2 || blocks == 1;
      CHECK((b.failed_at == 0) == should_fail);
      if (should_fail) CHECK(b.error.find("bad_alloc") != std::string::npos);
      ++k;
    }
    CHECK(k == blocks);
  }
}

// Token budgets: every batch of every rank fits rows * padded length <= batch_tokens (or is one
// sequence), holds as many as fit where it is not the last of a pool, and the ranks' batches
// are disjoint, equal in number, and miss fewer than world_size of the pass's batches.
static void token_budget_plans_fit_and_cover() {
  std::vector<int64_t> lengths;
  for (int i = 0; i < 300; ++i) lengths.push_back((i * 37 + 11) % 61 + (i % 7 == 0 ? 40 : 0));
  lengths[5] = 0;
  for (bool bucket : {false, true}) {
    for (int64_t multiple : {1, 8}) {
      for (int64_t max_len : {0, 48}) {
        PackSpec pack;
        pack.bucket = bucket;
        pack.bucket_pool = 3;
        pack.batch_tokens = 400;
        PadSpec pad{max_len, max_len > 0 ? 1 : multiple, false, false, 0.0};
        const PassPlan whole = PassPlan::build(lengths, order_of(1, true, 3), pack, pad, 2);
        for (int64_t world : {1, 3}) {
          std::set<int64_t> seen;
          for (int64_t rank = 0; rank < world; ++rank) {
            const PassPlan plan = PassPlan::build(lengths, order_of(1, true, 3, 0, false, rank, world), pack, pad, 2);
            CHECK(plan.num_batches() == whole.num_batches() / world);
            for (int64_t g = 0; g < plan.num_batches(); ++g) {
              const int64_t rows = plan.batch_start(g + 1) - plan.batch_start(g);
              int64_t longest = 0;
              for (int64_t i = plan.batch_start(g); i < plan.batch_start(g + 1); ++i) {
                const int64_t seq = plan.seqs()[static_cast<size_t>(i)];
                longest = std::max(longest, max_len > 0 ? std::min(lengths[seq], max_len) : lengths[seq]);
                CHECK(seen.insert(seq).second);
              }
              CHECK(rows >= 1);
              CHECK(rows * std::max<int64_t>(1, pad.padded_length(longest)) <= 400);
            }
          }
          if (world == 1) CHECK(seen.size() == lengths.size());
        }
        if (!bucket) {  // greedy: a batch took the next sequence unless it would not fit
          for (int64_t g = 0; g + 1 < whole.num_batches(); ++g) {
            int64_t longest = 0;
            const int64_t rows = whole.batch_start(g + 1) - whole.batch_start(g) + 1;
            for (int64_t i = whole.batch_start(g); i <= whole.batch_start(g + 1); ++i) {
              const int64_t len = lengths[whole.seqs()[static_cast<size_t>(i)]];
              longest = std::max(longest, max_len > 0 ? std::min(len, max_len) : len);
            }
            CHECK(rows * std::max<int64_t>(1, pad.padded_length(longest)) > 400);
          }
        }
      }
    }
  }
  PackSpec pack;
  pack.batch_tokens = 50;
  CHECK(throws_argument_error([&] { PassSizes(lengths, order_of(1), pack, PadSpec{}); },
                              "PackSpec.batch_tokens=50 cannot hold sequence 0 padded to 51 steps"));
  pack.pack = true;
  CHECK(throws_argument_error([&] { pack.validate(); }, "PackSpec.batch_tokens applies to padded batches"));
}

// Best fit: every step of every sequence once a pass (over all ranks), a sequence of at most
// max_len steps whole in one row, longer ones in pieces of max_len and their rest; no row over
// max_len; and PassSizes finds items and batches of the stream of passes where the plans put them.
static void best_fit_plans_keep_short_sequences_whole() {
  std::vector<int64_t> lengths;
  for (int i = 0; i < 400; ++i) lengths.push_back((i * 53 + 7) % 90 + (i % 50 == 0 ? 250 : 0));
  lengths[3] = 0;
  lengths[4] = 128;
  const int64_t L = 64;
  PackSpec pack;
  pack.pack = true;
  pack.best_fit = true;
  pack.bucket_pool = 5;
  const PadSpec pad{L, 1, false, false, 0.0};
  for (int64_t world : {1, 2}) {
    std::vector<std::vector<std::pair<int64_t, int64_t>>> pieces(lengths.size());
    int64_t rows = 0, steps = 0;
    for (int64_t rank = 0; rank < world; ++rank) {
      const PassPlan plan = PassPlan::build(lengths, order_of(4, true, 1, 0, false, rank, world), pack, pad, 1);
      std::vector<PlanPiece> row;
      for (int64_t r = 0; r < plan.num_rows(); ++r) {
        plan.row_pieces(r, row);
        int64_t used = 0;
        for (const PlanPiece& p : row) {
          pieces[static_cast<size_t>(p.seq)].push_back({p.first, p.count});
          used += p.count;
        }
        CHECK(!row.empty() && used <= L);
        steps += used;
      }
      rows += plan.num_rows();
    }
    int64_t total = 0;
    for (int64_t len : lengths) total += len;
    CHECK(rows >= (total + L - 1) / L && rows <= (total + L - 1) / L * 5 / 4);  // pools of 5 rows: some waste
    if (world == 1) CHECK(steps == total);
    for (size_t s = 0; s < lengths.size(); ++s) {
      auto& p = pieces[s];
      std::sort(p.begin(), p.end());
      if (world == 1 && lengths[s] <= L) CHECK(p.size() == (lengths[s] > 0 ? 1u : 0u));
      for (size_t k = 0; k < p.size(); ++k) {
        if (world == 1) CHECK(p[k].first == static_cast<int64_t>(k) * L);
        CHECK(p[k].second == std::min(L, lengths[s] - p[k].first));
      }
    }
  }
  // The stream of passes: entry i of PassSizes::locate is where the counts say it is.
  const OrderSpec order = order_of(4, true, 1);
  const PassSizes sizes(lengths, order, pack, pad);
  int64_t before = 0;
  for (uint64_t pass = 0; pass < 4; ++pass) {
    const PassPlan plan = PassPlan::build(lengths, order, pack, pad, pass);
    CHECK(sizes.items(pass) == plan.num_rows());
    CHECK(sizes.batches(pass) == plan.num_batches());
    const StreamPosition first = sizes.locate(before, true), last = sizes.locate(before + plan.num_rows() - 1, true);
    CHECK(first.pass == pass && first.index == 0);
    CHECK(last.pass == pass && last.index == plan.num_rows() - 1);
    before += plan.num_rows();
  }
  pack.bucket = true;
  CHECK(throws_argument_error([&] { pack.validate(); }, "are alternatives"));
  pack.bucket = false;
  pack.pack = false;
  CHECK(throws_argument_error([&] { pack.validate(); }, "PackSpec.best_fit needs PackSpec.pack"));
}

int main() {
  packing_keeps_every_step_once();
  permutation_is_a_bijection();
  rank_shares_are_disjoint_with_equal_batch_counts();
  window_index_skips_short_series();
  fingerprint_sees_every_value_of_small_sources();
  npy_header_parsing();
  npy_fuzz_regressions();
  npy_file_maps_raw_values();
  half_conversions_round_to_nearest_even();
  pipeline_delivers_every_batch_in_order();
  ragged_file_cuts_sequences();
  ragged_file_handles_empty_files();
  ragged_file_refuses_damage();
  pipeline_close_races_next_and_close();
  buffers_outlive_their_pipeline();
  pipeline_in_a_forked_child();
  sequence_workers_share_pass_plans();
  block_fields_by_name();
  epoch_sizes_exact_cases();
  window_span_and_validation();
  sequence_data_make_checks_its_parts();
  sequence_blocks_always_carry_mask_and_lengths();
  window_blocks_fields();
  window_ranges_follow_slicing();
  window_extras_by_hand();
  mixtures_keep_their_quotas();
  elastic_resume_shares_the_rest_of_a_pass();
  elastic_resume_plans_the_rest_of_a_pass_of_sequences();
  elastic_resume_plans_the_rest_of_a_pass_of_packed_rows();
  elastic_resume_plans_the_rest_of_a_pass_of_token_batches();
  elastic_resume_plans_the_rest_of_a_bucketed_pass();
  a_throwing_builder_gives_a_failed_block();
  tuner_follows_its_rules();
  tuned_pipeline_delivers_in_order();
  token_budget_plans_fit_and_cover();
  best_fit_plans_keep_short_sequences_whole();
  std::filesystem::remove_all(scratch_dir());
  if (failures == 0) std::printf("core_tests: all passed\n");
  return failures == 0 ? 0 : 1;
}
