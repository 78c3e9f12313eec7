#include "source/npy.hpp"

#include <cctype>
#include <cstring>
#include <limits>

#include "common/errors.hpp"

namespace fastfeed {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

[[noreturn]] void fail(const std::string& name, const std::string& what) {
  throw FormatError(name + ": " + what);
}

// Header text as a message may quote it: bytes outside printable ASCII (and backslashes) as
// \xNN, and no more than the first 64 bytes. A message is text (Python decodes it as UTF-8),
// and the header's bytes may be anything.
std::string printable(const std::string& text) {
  constexpr size_t kMaxShown = 64;
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (i == kMaxShown) return out + "...";
    const char ch = text[i];
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += ch;
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out;
}

// Finds `'key':` in the header dict and returns the position just after the colon.
size_t find_key(const std::string& header, const std::string& key, const std::string& name) {
  for (const char quote : {'\'', '"'}) {
    std::string needle = std::string(1, quote) + key + std::string(1, quote);
    size_t pos = header.find(needle);
    if (pos == std::string::npos) continue;
    pos += needle.size();
    while (pos < header.size() && std::isspace(static_cast<unsigned char>(header[pos]))) ++pos;
    if (pos >= header.size() || header[pos] != ':') fail(name, "malformed .npy header near '" + key + "'");
    ++pos;
    while (pos < header.size() && std::isspace(static_cast<unsigned char>(header[pos]))) ++pos;
    return pos;
  }
  fail(name, "the .npy header has no '" + key + "' entry");
}

DType parse_descr(const std::string& header, const std::string& name) {
  size_t pos = find_key(header, "descr", name);
  if (pos < header.size() && header[pos] == '[') {
    fail(name, "structured dtypes are not supported (descr is a list of fields)");
  }
  if (pos >= header.size() || (header[pos] != '\'' && header[pos] != '"')) {
    fail(name, "malformed 'descr' in the .npy header");
  }
  char quote = header[pos];
  size_t end = header.find(quote, pos + 1);
  if (end == std::string::npos) fail(name, "malformed 'descr' in the .npy header");
  std::string descr = header.substr(pos + 1, end - pos - 1);
  const std::string shown = printable(descr);
  if (descr.size() < 2) fail(name, "malformed dtype '" + shown + "' in the .npy header");
  char order = descr[0];
  char kind = descr[1];
  if (kind == 'O') fail(name, "object arrays (dtype '" + shown + "') cannot be memory-mapped");
  if (order == '>') {
    fail(name, "big-endian dtype '" + shown + "' is not supported; save it little-endian "
               "(arr.astype(arr.dtype.newbyteorder('<')))");
  }
  if (order != '<' && order != '|' && order != '=') {
    fail(name, "malformed dtype '" + shown + "' in the .npy header");
  }
  size_t itemsz = 0;
  for (size_t i = 2; i < descr.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(descr[i]))) {
      fail(name, "unsupported dtype '" + shown + "'");
    }
    itemsz = itemsz * 10 + static_cast<size_t>(descr[i] - '0');
    if (itemsz > 1024) fail(name, "unsupported dtype '" + shown + "'");
  }
  DType dtype;
  if (!dtype_from_kind(kind, itemsz, &dtype)) {
    fail(name, "unsupported dtype '" + shown +
                   "' (supported: bool, int8-64, uint8-64, float16/32/64)");
  }
  return dtype;
}

bool parse_fortran_order(const std::string& header, const std::string& name) {
  size_t pos = find_key(header, "fortran_order", name);
  if (header.compare(pos, 4, "True") == 0) return true;
  if (header.compare(pos, 5, "False") == 0) return false;
  fail(name, "malformed 'fortran_order' in the .npy header");
}

// A Python tuple of non-negative integers: "()", "(3,)", "(2, 3)", "(2, 3,)". Dimensions
// must be separated by commas ("(2 3)" is not a tuple and NumPy refuses it too).
std::vector<int64_t> parse_shape(const std::string& header, const std::string& name) {
  size_t pos = find_key(header, "shape", name);
  if (pos >= header.size() || header[pos] != '(') fail(name, "malformed 'shape' in the .npy header");
  size_t end = header.find(')', pos);
  if (end == std::string::npos) fail(name, "malformed 'shape' in the .npy header");
  auto skip_space = [&](size_t i) {
    while (i < end && std::isspace(static_cast<unsigned char>(header[i]))) ++i;
    return i;
  };
  std::vector<int64_t> shape;
  size_t i = skip_space(pos + 1);
  while (i < end) {
    if (!std::isdigit(static_cast<unsigned char>(header[i]))) fail(name, "malformed 'shape' in the .npy header");
    int64_t v = 0;
    while (i < end && std::isdigit(static_cast<unsigned char>(header[i]))) {
      int digit = header[i] - '0';
      if (v > (std::numeric_limits<int64_t>::max() - digit) / 10) {
        fail(name, "a dimension in the .npy header's shape is too large");
      }
      v = v * 10 + digit;
      ++i;
    }
    shape.push_back(v);
    i = skip_space(i);
    if (i == end) break;
    if (header[i] != ',') fail(name, "malformed 'shape' in the .npy header");
    i = skip_space(i + 1);
  }
  return shape;
}

uint64_t read_le(const std::byte* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

}  // namespace

NpyHeader parse_npy_header(const std::byte* data, size_t size, const std::string& name) {
  if (size < kMagicLen + 2 || std::memcmp(data, kMagic, kMagicLen) != 0) {
    fail(name, "not a .npy file (the magic string \\x93NUMPY is missing)");
  }
  auto major = static_cast<unsigned>(data[6]);
  size_t len_bytes = 0;
  if (major == 1) len_bytes = 2;
  else if (major == 2 || major == 3) len_bytes = 4;
  else fail(name, "unsupported .npy format version " + std::to_string(major) + " (supported: 1, 2, 3)");
  size_t prefix = kMagicLen + 2 + len_bytes;
  if (size < prefix) fail(name, "truncated .npy header (file is " + std::to_string(size) + " bytes)");
  size_t header_len = static_cast<size_t>(read_le(data + kMagicLen + 2, len_bytes));
  if (header_len > size - prefix) {
    fail(name, "truncated .npy header: it declares " + std::to_string(header_len) +
                   " bytes but the file has " + std::to_string(size - prefix) + " after the prefix");
  }
  std::string header(reinterpret_cast<const char*>(data + prefix), header_len);

  NpyHeader out;
  out.dtype = parse_descr(header, name);
  if (parse_fortran_order(header, name)) {
    fail(name, "Fortran-ordered arrays are not supported; save a C-ordered copy "
               "(np.save(path, np.ascontiguousarray(arr)))");
  }
  out.shape = parse_shape(header, name);
  // NumPy writes every dtype the core reads with a header of ASCII text (a format 3.0 header is
  // UTF-8 only for the field names of structured dtypes, refused above); NumPy itself would
  // not read one with other bytes.
  for (size_t i = 0; i < header_len; ++i) {
    const auto c = static_cast<unsigned char>(header[i]);
    if (c >= 0x80) {
      static const char kHex[] = "0123456789abcdef";
      fail(name, std::string("the .npy header is not ASCII text (byte 0x") + kHex[c >> 4] + kHex[c & 0xf] +
                     " at offset " + std::to_string(prefix + i) + " of the file)");
    }
  }
  out.data_offset = prefix + header_len;
  // The core reads values in place through typed pointers, so they must be aligned to their
  // size (the map starts on a page). NumPy pads every header to 64 (formerly 16) bytes.
  if (out.data_offset % itemsize(out.dtype) != 0) {
    fail(name, "the values start at byte " + std::to_string(out.data_offset) + ", not a multiple of the " +
                   std::to_string(itemsize(out.dtype)) + "-byte item size (np.save pads the header to align "
                   "them); save the array again with np.save");
  }

  // The product of the non-zero dimensions is bounded too, so that readers may multiply any
  // of them (a feature shape, say) without overflow even when another dimension is 0.
  uint64_t count = 1;
  uint64_t nonzero = 1;
  for (int64_t d : out.shape) {
    if (d == 0) {
      count = 0;
      continue;
    }
    if (nonzero > std::numeric_limits<uint64_t>::max() / 16 / static_cast<uint64_t>(d)) {
      fail(name, "the shape in the .npy header is too large");
    }
    nonzero *= static_cast<uint64_t>(d);
  }
  if (count != 0) count = nonzero;
  uint64_t nbytes = count * itemsize(out.dtype);
  uint64_t available = size - out.data_offset;
  if (nbytes > available) {
    fail(name, "truncated .npy data: the shape needs " + std::to_string(nbytes) +
                   " bytes of values but the file holds " + std::to_string(available));
  }
  return out;
}

NpyFile NpyFile::open(const std::string& path) {
  NpyFile f;
  f.file = MappedFile::open(path);
  f.header = parse_npy_header(f.file->data(), f.file->size(), path);
  return f;
}

NpyFile NpyFile::open_raw(const std::string& path, DType dtype, std::vector<int64_t> shape) {
  // Bounded as parse_npy_header bounds a shape: readers may multiply any of the dimensions,
  // so the non-zero ones are bounded even when another is 0.
  uint64_t nonzero = itemsize(dtype);
  bool empty = false;
  std::string dims;
  for (int64_t d : shape) {
    if (d < 0) throw ArgumentError(path + ": a raw array's dimensions must be >= 0, got " + std::to_string(d));
    dims += (dims.empty() ? "" : ", ") + std::to_string(d);
    if (d == 0) {
      empty = true;
      continue;
    }
    if (nonzero > std::numeric_limits<uint64_t>::max() / 16 / static_cast<uint64_t>(d)) {
      throw ArgumentError(path + ": the raw array's shape (" + dims + ", ...) is too large");
    }
    nonzero *= static_cast<uint64_t>(d);
  }
  const uint64_t nbytes = empty ? 0 : nonzero;
  NpyFile f;
  f.file = MappedFile::open(path);
  if (f.file->size() < nbytes) {
    fail(path, "too short: " + std::string(dtype_name(dtype)) + " values of shape (" + dims +
                   (shape.size() == 1 ? "," : "") + ") need " + std::to_string(nbytes) +
                   " bytes, but the file holds " + std::to_string(f.file->size()));
  }
  f.header.dtype = dtype;
  f.header.shape = std::move(shape);
  f.header.data_offset = 0;
  return f;
}

}  // namespace fastfeed
