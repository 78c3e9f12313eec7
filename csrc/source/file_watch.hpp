// Notices, while an epoch runs, that a memory-mapped source file shrank, vanished or was replaced.
#pragma once
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "source/mapped_file.hpp"

namespace fastfeed {

class FileWatch {
 public:
  explicit FileWatch(std::vector<std::shared_ptr<const MappedFile>> files) : files_(std::move(files)) {}
  // Set up once, before any thread uses it: assigning carries the files, not the clock.
  FileWatch& operator=(FileWatch&& other) noexcept {
    files_ = std::move(other.files_);
    last_stat_us_.store(0, std::memory_order_relaxed);
    return *this;
  }

  // "" while every file is as it was mapped, else what happened to which file. A read that hit
  // a missing page (see bus_guard.hpp) is seen at once; the files on disk are looked at (one
  // stat each) at most every kStatInterval, by whichever thread comes first.
  std::string problem() const {
    const int64_t now = std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::steady_clock::now().time_since_epoch()).count();
    int64_t last = last_stat_us_.load(std::memory_order_relaxed);
    const bool look = now - last >= kStatInterval.count() && last_stat_us_.compare_exchange_strong(last, now);
    return check(look);
  }

  // The same, looking at every file on disk now (when an epoch starts).
  std::string check_now() const { return check(true); }

 private:
  std::string check(bool stat_files) const {
    for (const auto& f : files_) {
      if (f->damaged()) return f->path() + " shrank while it was being read (a page of the mapping was gone)";
    }
    if (!stat_files) return "";
    for (const auto& f : files_) {
      std::string why = f->check_unchanged();
      if (!why.empty()) return why;
    }
    return "";
  }

  static constexpr std::chrono::microseconds kStatInterval{200000};
  std::vector<std::shared_ptr<const MappedFile>> files_;
  mutable std::atomic<int64_t> last_stat_us_{0};
};

}  // namespace fastfeed
