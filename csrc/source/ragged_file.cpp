#include "source/ragged_file.hpp"

#include <limits>

#include "common/errors.hpp"

// The offsets are read in place as int64 and the values handed on as they lie in the file,
// both little-endian on disk.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "fastfeed dataset files are little-endian; big-endian hosts are not supported"
#endif

namespace fastfeed {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw FormatError(path + ": " + what);
}

// Bytes that `rows` rows of `row_bytes` need, or fails naming `path` when it overflows.
uint64_t bytes_needed(uint64_t rows, uint64_t row_bytes, const std::string& path) {
  if (row_bytes != 0 && rows > std::numeric_limits<uint64_t>::max() / row_bytes) {
    fail(path, std::to_string(rows) + " rows of " + std::to_string(row_bytes) +
                   " bytes do not fit in a file");
  }
  return rows * row_bytes;
}

void check_offsets(const int64_t* offsets, int64_t count, int64_t num_steps, const std::string& path) {
  if (offsets[0] != 0) {
    fail(path, "offsets[0] is " + std::to_string(offsets[0]) + ", but the first sequence must start at 0");
  }
  for (int64_t i = 1; i <= count; ++i) {
    if (offsets[i] < offsets[i - 1]) {
      fail(path, "offsets decrease at index " + std::to_string(i) + ": offsets[" + std::to_string(i) +
                     "] = " + std::to_string(offsets[i]) + " < offsets[" + std::to_string(i - 1) +
                     "] = " + std::to_string(offsets[i - 1]));
    }
  }
  if (offsets[count] != num_steps) {
    fail(path, "the last offset (offsets[" + std::to_string(count) + "]) is " +
                   std::to_string(offsets[count]) + ", but the header says there are " +
                   std::to_string(num_steps) + " steps");
  }
}

}  // namespace

std::shared_ptr<const RaggedFile> RaggedFile::open(const std::string& values_path,
                                                   const std::string& offsets_path, int64_t count,
                                                   int64_t num_steps, DType dtype, int64_t row_elems) {
  if (count < 0 || num_steps < 0 || row_elems < 0) {
    throw ArgumentError("RaggedFile::open: count (" + std::to_string(count) + "), num_steps (" +
                        std::to_string(num_steps) + ") and row_elems (" + std::to_string(row_elems) +
                        ") must be >= 0");
  }
  std::shared_ptr<RaggedFile> r(new RaggedFile());
  r->count_ = count;
  r->num_steps_ = num_steps;
  r->dtype_ = dtype;
  r->row_elems_ = row_elems;

  r->offsets_ = MappedFile::open(offsets_path);
  const uint64_t offsets_bytes =
      bytes_needed(static_cast<uint64_t>(count) + 1, sizeof(int64_t), offsets_path);
  if (r->offsets_->size() < offsets_bytes) {
    fail(offsets_path, "too short: " + std::to_string(count) + " sequences need " +
                           std::to_string(count + 1) + " offsets (" + std::to_string(offsets_bytes) +
                           " bytes), but the file holds " + std::to_string(r->offsets_->size()) + " bytes");
  }
  r->offsets_data_ = reinterpret_cast<const int64_t*>(r->offsets_->data());
  check_offsets(r->offsets_data_, count, num_steps, offsets_path);

  r->values_ = MappedFile::open(values_path);
  const uint64_t row_bytes =
      bytes_needed(static_cast<uint64_t>(row_elems), itemsize(dtype), values_path);
  const uint64_t values_bytes = bytes_needed(static_cast<uint64_t>(num_steps), row_bytes, values_path);
  if (r->values_->size() < values_bytes) {
    fail(values_path, "too short: " + std::to_string(num_steps) + " steps of " +
                          std::to_string(row_bytes) + " bytes (" + dtype_name(dtype) + ") need " +
                          std::to_string(values_bytes) + " bytes, but the file holds " +
                          std::to_string(r->values_->size()));
  }
  return r;
}

std::vector<int64_t> RaggedFile::lengths() const {
  std::vector<int64_t> out(static_cast<size_t>(count_));
  for (int64_t i = 0; i < count_; ++i) out[static_cast<size_t>(i)] = length(i);
  return out;
}

Series RaggedFile::sequence(int64_t i) const {
  if (i < 0 || i >= count_) {
    throw ArgumentError("sequence " + std::to_string(i) + " is out of range: " + values_path() +
                        " holds " + std::to_string(count_) + " sequences");
  }
  Series s;
  s.dtype = dtype_;
  s.row_elems = row_elems_;
  s.length = length(i);
  // An empty values file has no mapping (data() is null); its sequences are all empty.
  s.data = values_->data() == nullptr ? nullptr : values_->data() + offsets_data_[i] * s.row_bytes();
  s.file = values_;
  return s;
}

}  // namespace fastfeed
