// Element types the core reads and writes, and their sizes and names.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace fastfeed {

enum class DType : uint8_t {
  Bool, Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32, UInt64,
  Float16, Float32, Float64,
  BFloat16,  // output only: NumPy has no bfloat16, so sources never carry it
};

inline constexpr int kNumDTypes = 13;

inline size_t itemsize(DType t) {
  switch (t) {
    case DType::Bool: case DType::Int8: case DType::UInt8: return 1;
    case DType::Int16: case DType::UInt16: case DType::Float16: case DType::BFloat16: return 2;
    case DType::Int32: case DType::UInt32: case DType::Float32: return 4;
    case DType::Int64: case DType::UInt64: case DType::Float64: return 8;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::Bool: return "bool";
    case DType::Int8: return "int8";
    case DType::Int16: return "int16";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::UInt8: return "uint8";
    case DType::UInt16: return "uint16";
    case DType::UInt32: return "uint32";
    case DType::UInt64: return "uint64";
    case DType::Float16: return "float16";
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::BFloat16: return "bfloat16";
  }
  return "?";
}

inline bool is_floating(DType t) {
  return t == DType::Float16 || t == DType::Float32 || t == DType::Float64 || t == DType::BFloat16;
}

// Maps a NumPy kind character ('b', 'i', 'u', 'f') and item size to a DType.
// Returns false for anything the core does not support (objects, strings, complex, ...).
inline bool dtype_from_kind(char kind, size_t size, DType* out) {
  switch (kind) {
    case 'b': if (size == 1) { *out = DType::Bool; return true; } return false;
    case 'i':
      switch (size) {
        case 1: *out = DType::Int8; return true;
        case 2: *out = DType::Int16; return true;
        case 4: *out = DType::Int32; return true;
        case 8: *out = DType::Int64; return true;
      }
      return false;
    case 'u':
      switch (size) {
        case 1: *out = DType::UInt8; return true;
        case 2: *out = DType::UInt16; return true;
        case 4: *out = DType::UInt32; return true;
        case 8: *out = DType::UInt64; return true;
      }
      return false;
    case 'f':
      switch (size) {
        case 2: *out = DType::Float16; return true;
        case 4: *out = DType::Float32; return true;
        case 8: *out = DType::Float64; return true;
      }
      return false;
  }
  return false;
}

inline bool dtype_from_name(const std::string& name, DType* out) {
  for (int i = 0; i < kNumDTypes; ++i) {
    auto t = static_cast<DType>(i);
    if (name == dtype_name(t)) { *out = t; return true; }
  }
  return false;
}

}  // namespace fastfeed
