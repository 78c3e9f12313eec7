#include "source/convert.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <cstring>
#include <type_traits>

#include "common/errors.hpp"
#include "common/half.hpp"

namespace fastfeed {
namespace {

// Storage types for the two 16-bit float formats, so that overloads can tell them apart.
struct Half { uint16_t bits; };
struct BFloat16 { uint16_t bits; };

template <class T> struct Tag { using type = T; };

template <class F>
void visit_dtype(DType t, F&& f) {
  switch (t) {
    case DType::Bool: return f(Tag<bool>{});
    case DType::Int8: return f(Tag<int8_t>{});
    case DType::Int16: return f(Tag<int16_t>{});
    case DType::Int32: return f(Tag<int32_t>{});
    case DType::Int64: return f(Tag<int64_t>{});
    case DType::UInt8: return f(Tag<uint8_t>{});
    case DType::UInt16: return f(Tag<uint16_t>{});
    case DType::UInt32: return f(Tag<uint32_t>{});
    case DType::UInt64: return f(Tag<uint64_t>{});
    case DType::Float16: return f(Tag<Half>{});
    case DType::Float32: return f(Tag<float>{});
    case DType::Float64: return f(Tag<double>{});
    case DType::BFloat16: return f(Tag<BFloat16>{});
  }
}

// Reads one stored element as the arithmetic value NumPy would cast from.
template <class S> inline S load(const S& s) { return s; }
inline float load(const Half& h) { return half_to_float(h.bits); }
inline float load(const BFloat16& b) { return bfloat16_to_float(b.bits); }

// Casts an arithmetic value to a stored element.
template <class D, class V>
inline D store(V v) {
  if constexpr (std::is_same_v<D, Half>) {
    // NumPy rounds double straight to half; every other type goes through float.
    if constexpr (std::is_same_v<V, double>) return Half{double_to_half(v)};
    else return Half{float_to_half(static_cast<float>(v))};
  } else if constexpr (std::is_same_v<D, BFloat16>) {
    return BFloat16{float_to_bfloat16(static_cast<float>(v))};
  } else {
    return static_cast<D>(v);
  }
}

template <class S, class D>
void convert_row(const S* src, D* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = store<D>(load(src[i]));
}

template <class S, class D>
void normalize_row(const S* src, D* dst, int64_t n, const double* mean, const double* std) {
  for (int64_t i = 0; i < n; ++i) {
    dst[i] = store<D>((static_cast<double>(load(src[i])) - mean[i]) / std[i]);
  }
}

}  // namespace

// Copies of at least this many bytes bypass the caches (see copy_bytes).
constexpr size_t kStreamingCopyBytes = 16 * 1024;

// memcpy, except that large copies use streaming stores: a batch of big windows is far larger
// than the caches, and streaming skips reading each destination line before writing it
// (which a plain copy does), leaving more memory bandwidth for the data itself.
void copy_bytes(std::byte* dst, const std::byte* src, size_t n) {
#if defined(__SSE2__)
  if (n >= kStreamingCopyBytes) {
    const size_t head = (16 - (reinterpret_cast<uintptr_t>(dst) & 15)) & 15;
    std::memcpy(dst, src, head);
    dst += head;
    src += head;
    n -= head;
    const size_t blocks = n / 64;
    for (size_t i = 0; i < blocks; ++i, dst += 64, src += 64) {
      const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 16));
      const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 32));
      const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 48));
      _mm_stream_si128(reinterpret_cast<__m128i*>(dst), a);
      _mm_stream_si128(reinterpret_cast<__m128i*>(dst + 16), b);
      _mm_stream_si128(reinterpret_cast<__m128i*>(dst + 32), c);
      _mm_stream_si128(reinterpret_cast<__m128i*>(dst + 48), d);
    }
    std::memcpy(dst, src, n % 64);
    _mm_sfence();  // streaming stores are weakly ordered: complete them before the hand-over
    return;
  }
#endif
  std::memcpy(dst, src, n);
}

void convert_rows(const std::byte* src, DType src_type, size_t src_stride, int64_t n_rows,
                  int64_t row_elems, std::byte* dst, DType dst_type, const Normalization& norm) {
  const size_t src_row_bytes = static_cast<size_t>(row_elems) * itemsize(src_type);
  const size_t dst_row_bytes = static_cast<size_t>(row_elems) * itemsize(dst_type);
  if (src_type == dst_type && !norm.active()) {
    if (src_stride == src_row_bytes) {
      copy_bytes(dst, src, src_row_bytes * static_cast<size_t>(n_rows));
    } else {
      for (int64_t r = 0; r < n_rows; ++r) {
        std::memcpy(dst + r * dst_row_bytes, src + r * src_stride, src_row_bytes);
      }
    }
    return;
  }
  if (norm.active() && static_cast<int64_t>(norm.mean.size()) != row_elems) {
    throw ArgumentError("normalisation has " + std::to_string(norm.mean.size()) +
                        " values per step but a step has " + std::to_string(row_elems) + " elements");
  }
  visit_dtype(src_type, [&](auto src_tag) {
    using S = typename decltype(src_tag)::type;
    visit_dtype(dst_type, [&](auto dst_tag) {
      using D = typename decltype(dst_tag)::type;
      // A contiguous run of rows converts as one long row when no per-element statistics apply.
      const bool flat = src_stride == src_row_bytes && !norm.active();
      const int64_t rows = flat ? 1 : n_rows;
      const int64_t elems = flat ? n_rows * row_elems : row_elems;
      for (int64_t r = 0; r < rows; ++r) {
        const auto* s = reinterpret_cast<const S*>(src + r * src_stride);
        auto* d = reinterpret_cast<D*>(dst + r * dst_row_bytes);
        if (norm.active()) normalize_row(s, d, elems, norm.mean.data(), norm.std.data());
        else convert_row(s, d, elems);
      }
    });
  });
}

}  // namespace fastfeed
