// Built only when CMake finds nvcc (FASTFEED_CUDA=AUTO or ON). cudart is linked statically and
// loads the driver lazily, so importing fastfeed works on machines without a driver or GPU.
#include <cuda_runtime.h>

#include "cuda/cuda_runtime.hpp"

namespace fastfeed::cuda {

bool compiled() { return true; }

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error for later calls
    return 0;
  }
  return n;
}

int runtime_version() { return CUDART_VERSION; }

void* host_alloc(size_t bytes) {
  void* p = nullptr;
  if (device_count() == 0 || cudaHostAlloc(&p, bytes == 0 ? 1 : bytes, cudaHostAllocDefault) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  return p;
}

void host_free(void* data) {
  if (cudaFreeHost(data) != cudaSuccess) cudaGetLastError();
}

std::string pin(void* data, size_t bytes) {
  if (device_count() == 0) return "no CUDA device";
  const cudaError_t err = cudaHostRegister(data, bytes, cudaHostRegisterDefault);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return cudaGetErrorString(err);
  }
  return "";
}

void unpin(void* data) {
  if (cudaHostUnregister(data) != cudaSuccess) cudaGetLastError();
}

}  // namespace fastfeed::cuda
