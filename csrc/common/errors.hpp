// The two kinds of failure the core reports; the bindings map them to Python exceptions.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace fastfeed {

// A file that is not what it claims to be: bad magic, unsupported header, truncated data.
// Python sees fastfeed.FormatError (a ValueError).
struct FormatError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An argument the core cannot work with. Python sees ValueError.
struct ArgumentError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// Throws ArgumentError("<field> must be <rule>, got <value>") unless `ok`: the specs' checks,
// so that every message names the field it is about.
inline void require_arg(bool ok, const char* field, const char* rule, int64_t value) {
  if (!ok) throw ArgumentError(std::string(field) + " must be " + rule + ", got " + std::to_string(value));
}

}  // namespace fastfeed
