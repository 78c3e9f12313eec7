// Turns a failed CUDA call into an exception that names the call (Python sees RuntimeError).
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace fastfeed::cuda {

inline void check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  cudaGetLastError();  // clear it, so that later calls do not report it again
  throw std::runtime_error(std::string("CUDA: ") + what + " failed: " + cudaGetErrorString(err));
}

// This module links its own (static) CUDA runtime, whose current device is per thread and
// separate from PyTorch's: every entry point sets it.
inline void use_device(int device) { check(cudaSetDevice(device), "cudaSetDevice"); }

}  // namespace fastfeed::cuda
