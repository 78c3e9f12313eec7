// The CUDA runtime as the rest of the core sees it: plain C++, no CUDA headers, and stubs
// when the core is built without CUDA (FASTFEED_WITH_CUDA undefined), so callers need no #if.
#pragma once
#include <cstddef>
#include <string>

namespace fastfeed::cuda {

// Whether this build has CUDA support compiled in.
bool compiled();
// Usable CUDA devices: 0 without CUDA support, without a driver or without a GPU.
int device_count();
// The CUDA runtime version this build was compiled against (e.g. 13000), or 0.
int runtime_version();

// Page-locked host memory that the GPU can read asynchronously, or nullptr when there is no
// device or the driver refuses (callers fall back to ordinary memory).
void* host_alloc(size_t bytes);
void host_free(void* data);

// Page-locks host memory so uploads from it run asynchronously at full bus speed. Returns ""
// on success, else why not (no device, or the driver refused).
std::string pin(void* data, size_t bytes);
void unpin(void* data);

}  // namespace fastfeed::cuda
