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

  // Set once a read hit a page the file no longer has (it shrank): what was read is not the
  // file's content. See bus_guard.hpp.
  bool damaged() const;
  // Why the file on disk no longer matches the mapping (gone, replaced, shorter), or "".
  std::string check_unchanged() const;

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const std::byte* data, size_t size, unsigned long device, unsigned long inode);
  std::string path_;
  const std::byte* data_;
  size_t size_;
  unsigned long device_, inode_;  // which file was mapped, to notice it being replaced
  int guard_slot_ = -1;
};

}  // namespace fastfeed
