// The two kinds of failure the core reports; the bindings map them to Python exceptions.
#pragma once
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

}  // namespace fastfeed
