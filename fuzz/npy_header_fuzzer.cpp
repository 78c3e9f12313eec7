// libFuzzer target for the .npy header parser (csrc/source/npy.hpp). Build and run: `make fuzz`.
//
// The parser's contract: for any bytes it either returns a header the core can use in place
// or throws FormatError. Anything else is a bug and must crash here: another exception type
// escaping (std::terminate), an ASan/UBSan report, or a header that breaks what the readers
// of NpyHeader rely on (checked below with __builtin_trap).
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/errors.hpp"
#include "source/npy.hpp"

using fastfeed::FormatError;
using fastfeed::NpyHeader;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  const auto* data = reinterpret_cast<const std::byte*>(bytes);
  NpyHeader h;
  try {
    h = fastfeed::parse_npy_header(data, size, "fuzz.npy");
  } catch (const FormatError& e) {
    // The message must name the file, and be text: Python decodes it as UTF-8 (quoted header
    // bytes are escaped, so nothing in it is past ASCII).
    const std::string message = e.what();
    if (message.rfind("fuzz.npy: ", 0) != 0) __builtin_trap();
    for (const char c : message) {
      if (static_cast<unsigned char>(c) >= 0x80) __builtin_trap();
    }
    return 0;
  }
  // The values lie inside the image...
  if (h.data_offset > size) __builtin_trap();
  // ...at an offset where they can be read in place as their type (the map is page aligned).
  const size_t item = fastfeed::itemsize(h.dtype);
  if (item == 0 || h.data_offset % item != 0) __builtin_trap();
  // Every dimension is a count, and the element count of any sub-shape (bindings.cpp takes
  // the product of the trailing dimensions as int64 row_elems) and its byte size fit int64.
  int64_t elems = 1;
  for (int64_t d : h.shape) {
    if (d < 0) __builtin_trap();
    if (d != 0 && __builtin_mul_overflow(elems, d, &elems)) __builtin_trap();
  }
  int64_t nbytes = 0;
  if (__builtin_mul_overflow(elems, static_cast<int64_t>(item), &nbytes)) __builtin_trap();
  // The values the shape claims are all there: read them so that ASan sees any over-read.
  int64_t count = 1;
  for (int64_t d : h.shape) count *= d;
  const size_t value_bytes = static_cast<size_t>(count) * item;
  if (value_bytes > size - h.data_offset) __builtin_trap();
  volatile uint8_t sink = 0;
  for (size_t i = 0; i < value_bytes; i += 4096) sink = sink ^ bytes[h.data_offset + i];
  if (value_bytes > 0) sink = sink ^ bytes[h.data_offset + value_bytes - 1];
  (void)sink;
  return 0;
}
