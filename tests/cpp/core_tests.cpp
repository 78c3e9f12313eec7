// Tests of the C++ core on its own (no Python): `make sanitize` runs them under ASan/UBSan.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "assembler.hpp"
#include "errors.hpp"
#include "fingerprint.hpp"
#include "half.hpp"
#include "npy.hpp"
#include "order.hpp"
#include "permutation.hpp"
#include "pipeline.hpp"
#include "sequence_blocks.hpp"
#include "window_blocks.hpp"
#include "ragged_file.hpp"

using namespace fastfeed;

static int failures = 0;
#define CHECK(cond)                                                  \
  do {                                                               \
    if (!(cond)) {                                                   \
      std::fprintf(stderr, "%s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                    \
    }                                                                \
  } while (0)

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
  WindowSpec spec{3, 1, 1, 1, 0, -1};  // span 4
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
  WindowSpec spec{4, 1, 1, 1, 0, -1};
  auto assembler = std::make_shared<Assembler>(std::vector<Series>{s}, std::vector<Series>{s}, spec, out);
  const int64_t n = assembler->num_samples();  // 996
  for (int threads : {1, 3}) {
    ShareSpec share{n, true, 5, 0, 1, false};
    RunSpec run{10, 1, 0, (n + 9) / 10, 0, 2};
    Pipeline pipe(std::make_shared<WindowBlocks>(assembler, share, run, std::vector<int64_t>{},
                                                 std::vector<int64_t>{}, 5),
                  threads, 3);
    Permutation perm(static_cast<uint64_t>(n), 5, 1);
    Block b;
    int64_t position = 0;
    while (pipe.next(&b, std::chrono::milliseconds(1000)) == Pipeline::Status::Ready) {
      const auto* x = reinterpret_cast<const float*>(b[Output::X].data.get());
      for (int64_t i = 0; i < b.num_samples; ++i, ++position) {
        CHECK(x[i * 4] == static_cast<float>(perm(static_cast<uint64_t>(position))));
      }
    }
    CHECK(position == n);
  }
  // Closing mid-epoch joins the workers without delivering more.
  ShareSpec share{n, false, 0, 0, 1, false};
  RunSpec run{1, 0, 0, n, 0, 1};
  Pipeline pipe(std::make_shared<WindowBlocks>(assembler, share, run, std::vector<int64_t>{}, std::vector<int64_t>{}, 4),
                4, 2);
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
    PlanSpec plan{2, true, 7, false, false, 1, true, 8};
    PadSpec pad{8, 1, false, false, 0.0};
    SequenceOutput out;
    out.x_dtype = DType::Int32;
    auto builder = std::make_shared<SequenceBlocks>(data, plan, pad, out, 0, 1, RunSpec{2, 0, 0, 0, 0, 1}, 4);
    const int64_t batches = builder->batches_per_rank();
    CHECK(batches == (69 + 15) / 16);  // 69 steps in rows of 8, two rows a batch
    Pipeline pipe(std::make_shared<SequenceBlocks>(data, plan, pad, out, 0, 1, RunSpec{2, 0, 0, batches, 0, 1}, 4),
                  threads, 2);
    std::vector<int> seen(values.size() + 1, 0);
    Block b;
    while (pipe.next(&b, std::chrono::milliseconds(1000)) == Pipeline::Status::Ready) {
      CHECK(b.failed_at < 0);
      const auto* x = reinterpret_cast<const int32_t*>(b[Output::X].data.get());
      const auto* seg = reinterpret_cast<const int32_t*>(b[Output::SegmentIds].data.get());
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
  WindowSpec spec{window, 1, 1, 1, 0, -1};
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
    ShareSpec share{n, true, 3, 0, 1, false};
    RunSpec run{16, round, 0, (n + 15) / 16, 0, 1};
    Pipeline pipe(std::make_shared<WindowBlocks>(assembler, share, run, std::vector<int64_t>{},
                                                 std::vector<int64_t>{}, 4),
                  4, 2);
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
    CHECK(delivered <= run.end_batch);
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
    ShareSpec share{n, true, 9, 0, 1, false};
    RunSpec run{8, epoch, 0, (n + 7) / 8, 0, 3};
    auto pipe = std::make_unique<Pipeline>(std::make_shared<WindowBlocks>(assembler, share, run, std::vector<int64_t>{},
                                                                          std::vector<int64_t>{}, 3),
                                           3, 3);
    Block b;
    int64_t got = 0;
    while (pipe->next(&b, std::chrono::milliseconds(1000)) == Pipeline::Status::Ready) {
      if (++got % 7 == 0) kept.push_back(std::move(b));
    }
    pipe.reset();
    std::vector<Block> batch_of_kept;
    batch_of_kept.swap(kept);
    std::thread releaser([blocks = std::move(batch_of_kept)]() mutable {
      for (const Block& k : blocks) {
        const auto* x = reinterpret_cast<const double*>(k[Output::X].data.get());
        if (x[0] != 1.0) std::abort();
      }
      blocks.clear();
    });
    releaser.join();
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
  PlanSpec plan{4, true, 11, false, true, 2, false, 0};
  PadSpec pad{0, 8, false, false, 0.0};
  SequenceOutput out;
  out.x_dtype = DType::Float32;
  for (int epoch = 0; epoch < 3; ++epoch) {
    RunSpec run{4, epoch, 0, 500, 500, 1};  // 500-batch virtual epochs: several passes each
    Pipeline pipe(std::make_shared<SequenceBlocks>(data, plan, pad, out, 0, 1, run, 4), 4, 3);
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

int main() {
  packing_keeps_every_step_once();
  permutation_is_a_bijection();
  rank_shares_are_disjoint_with_equal_batch_counts();
  window_index_skips_short_series();
  fingerprint_sees_every_value_of_small_sources();
  npy_header_parsing();
  npy_fuzz_regressions();
  half_conversions_round_to_nearest_even();
  pipeline_delivers_every_batch_in_order();
  ragged_file_cuts_sequences();
  ragged_file_handles_empty_files();
  ragged_file_refuses_damage();
  pipeline_close_races_next_and_close();
  buffers_outlive_their_pipeline();
  sequence_workers_share_pass_plans();
  std::filesystem::remove_all(scratch_dir());
  if (failures == 0) std::printf("core_tests: all passed\n");
  return failures == 0 ? 0 : 1;
}
