#include "source/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/errors.hpp"
#include "source/bus_guard.hpp"

namespace fastfeed {

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw FormatError(path + ": cannot open: " + std::strerror(errno));
  }
  struct stat st{};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw FormatError(path + ": cannot stat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw FormatError(path + ": not a regular file");
  }
  size_t size = static_cast<size_t>(st.st_size);
  const std::byte* data = nullptr;
  if (size > 0) {
    // MAP_NORESERVE: a huge sparse file costs address space only, never RAM up front.
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      throw FormatError(path + ": cannot memory-map " + std::to_string(size) +
                        " bytes: " + std::strerror(err));
    }
    data = static_cast<const std::byte*>(p);
  }
  // The mapping keeps the file's pages reachable; the descriptor is no longer needed.
  ::close(fd);
  return std::shared_ptr<const MappedFile>(new MappedFile(path, data, size, st.st_dev, st.st_ino));
}

MappedFile::MappedFile(std::string path, const std::byte* data, size_t size, unsigned long device,
                       unsigned long inode)
    : path_(std::move(path)), data_(data), size_(size), device_(device), inode_(inode) {
  guard_slot_ = BusGuard::add(data_, size_);
}

bool MappedFile::damaged() const { return BusGuard::damaged(guard_slot_); }

std::string MappedFile::check_unchanged() const {
  if (damaged()) return path_ + " shrank while it was being read (a page of the mapping was gone)";
  struct stat st{};
  if (::stat(path_.c_str(), &st) != 0) {
    return path_ + " is gone (" + std::string(std::strerror(errno)) + ")";
  }
  if (static_cast<unsigned long>(st.st_dev) != device_ || static_cast<unsigned long>(st.st_ino) != inode_) {
    return path_ + " was replaced by another file";
  }
  if (static_cast<size_t>(st.st_size) < size_) {
    return path_ + " shrank from " + std::to_string(size_) + " to " + std::to_string(st.st_size) + " bytes";
  }
  return "";
}

void MappedFile::advise_random_access(bool random) const {
  if (data_ == nullptr) return;
  // Advice only changes performance, never results, so a refusal is not an error.
  ::madvise(const_cast<std::byte*>(data_), size_, random ? MADV_RANDOM : MADV_NORMAL);
}

MappedFile::~MappedFile() {
  BusGuard::remove(guard_slot_);
  if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
}

}  // namespace fastfeed
