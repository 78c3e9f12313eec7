// A read-only memory map of a whole file, unmapped when the last owner lets go.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

namespace fastfeed {

class MappedFile {
 public:
  // Maps `path` read-only. Throws FormatError naming the file if it cannot be opened or mapped.
  static std::shared_ptr<const MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  // Tells the kernel how the mapping will be read. Random access turns off read-around:
  // without it every page fault of a shuffled epoch reads (or zero-fills) megabytes around
  // the page, which makes a first batch from a huge file take seconds.
  void advise_random_access(bool random) const;

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const std::byte* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const std::byte* data_;
  size_t size_;
};

}  // namespace fastfeed
