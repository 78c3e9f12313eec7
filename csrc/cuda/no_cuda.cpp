// The CUDA interface of a build without CUDA support: nothing is usable, and the classes
// refuse to be made (the Python layer checks build_info() first and says why).
#include <stdexcept>

#include "cuda/cuda_runtime.hpp"
#include "cuda/device_gather.hpp"
#include "cuda/uploader.hpp"

namespace fastfeed::cuda {

bool compiled() { return false; }
int device_count() { return 0; }
int runtime_version() { return 0; }
void* host_alloc(size_t) { return nullptr; }
void host_free(void*) {}
std::string pin(void*, size_t) { return "this build of fastfeed has no CUDA support"; }
void unpin(void*) {}

namespace {
[[noreturn]] void no_cuda() { throw std::runtime_error("this build of fastfeed has no CUDA support"); }
}  // namespace

struct Uploader::Impl {};
Uploader::Uploader(int, uintptr_t) { no_cuda(); }
Uploader::~Uploader() = default;
uint64_t Uploader::upload(const std::vector<Copy>&, uintptr_t) { no_cuda(); }
uint64_t Uploader::finished() { no_cuda(); }
void Uploader::wait(uint64_t) { no_cuda(); }
void Uploader::synchronize() { no_cuda(); }

struct DeviceGather::Impl {};
DeviceGather::DeviceGather(int) { no_cuda(); }
DeviceGather::~DeviceGather() = default;
void DeviceGather::gather_windows(const int64_t*, size_t, const std::vector<RowGather>&, uintptr_t) { no_cuda(); }
void DeviceGather::gather_pieces(const int64_t*, size_t, const int64_t*, const std::vector<PieceGather>&, uintptr_t) {
  no_cuda();
}

}  // namespace fastfeed::cuda
