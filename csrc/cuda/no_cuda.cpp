// The CUDA runtime interface of a build without CUDA support: nothing is usable.
#include "cuda_runtime.hpp"

namespace fastfeed::cuda {

bool compiled() { return false; }
int device_count() { return 0; }
int runtime_version() { return 0; }
void* host_alloc(size_t) { return nullptr; }
void host_free(void*) {}
std::string pin(void*, size_t) { return "this build of fastfeed has no CUDA support"; }
void unpin(void*) {}

}  // namespace fastfeed::cuda
