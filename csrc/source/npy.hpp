// Reading NumPy's .npy format (versions 1-3) straight from a memory map.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.hpp"
#include "source/mapped_file.hpp"

namespace fastfeed {

struct NpyHeader {
  DType dtype;
  std::vector<int64_t> shape;
  size_t data_offset = 0;  // where the values start, in bytes from the file's start
};

// Parses the header of a .npy image of `size` bytes. `name` only labels errors.
// Throws FormatError for anything the core cannot use in place: bad magic, unknown version,
// big-endian or object or structured dtypes, Fortran order, fewer data bytes than the shape needs,
// values not aligned to their item size, or a shape whose non-zero dimensions multiply past int64.
NpyHeader parse_npy_header(const std::byte* data, size_t size, const std::string& name);

// A memory-mapped .npy file: the mapping and what its header says.
struct NpyFile {
  std::shared_ptr<const MappedFile> file;
  NpyHeader header;

  static NpyFile open(const std::string& path);
  // A file of bare values without a header, such as a dataset's labels (targets.bin): `shape`
  // C-ordered little-endian values of `dtype` from its first byte; bytes past them are ignored.
  // Mapped like a .npy file, so the bus guard and a FileWatch know it. Throws FormatError naming
  // the file when it holds fewer bytes, ArgumentError for a negative or overflowing shape.
  static NpyFile open_raw(const std::string& path, DType dtype, std::vector<int64_t> shape);
  const std::byte* values() const { return file->data() + header.data_offset; }
};

}  // namespace fastfeed
