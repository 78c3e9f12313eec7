// Many sequences stored back to back in one memory-mapped file, cut apart by int64 offsets:
// the values and offsets of a fastfeed dataset directory (python/fastfeed/dataset.py has the
// format). Only the counts the caller passes (the dataset header's) are trusted: bytes past
// them are an append that never committed and are ignored.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.hpp"
#include "source/mapped_file.hpp"
#include "source/series.hpp"

namespace fastfeed {

class RaggedFile {
 public:
  // Maps `values_path` (at least `num_steps` rows of `row_elems` elements of `dtype`) and
  // `offsets_path` (at least `count + 1` little-endian int64). Throws FormatError naming the
  // file for a short file or offsets that are not 0 first, non-decreasing, `num_steps` last;
  // ArgumentError for negative counts.
  static std::shared_ptr<const RaggedFile> open(const std::string& values_path,
                                                const std::string& offsets_path, int64_t count,
                                                int64_t num_steps, DType dtype, int64_t row_elems);

  int64_t count() const { return count_; }
  int64_t num_steps() const { return num_steps_; }
  DType dtype() const { return dtype_; }
  int64_t row_elems() const { return row_elems_; }
  const std::string& values_path() const { return values_->path(); }
  const std::string& offsets_path() const { return offsets_->path(); }

  // count() + 1 entries: sequence i holds steps [offsets()[i], offsets()[i + 1]).
  const int64_t* offsets() const { return offsets_data_; }
  int64_t length(int64_t i) const { return offsets_data_[i + 1] - offsets_data_[i]; }
  std::vector<int64_t> lengths() const;

  // Sequence `i` (0 <= i < count()) in place; the Series keeps the values map alive.
  Series sequence(int64_t i) const;

  // See MappedFile::advise_random_access.
  void advise_random_access(bool random) const { values_->advise_random_access(random); }

 private:
  RaggedFile() = default;

  std::shared_ptr<const MappedFile> values_;
  std::shared_ptr<const MappedFile> offsets_;
  const int64_t* offsets_data_ = nullptr;
  int64_t count_ = 0;
  int64_t num_steps_ = 0;
  DType dtype_ = DType::Float32;
  int64_t row_elems_ = 1;
};

}  // namespace fastfeed
