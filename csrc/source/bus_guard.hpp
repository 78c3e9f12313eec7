// Survives files that shrink under their memory maps.
//
// Reading a page of a mapping whose file was truncated raises SIGBUS, which kills the process.
// Registered mappings are guarded: a SIGBUS inside one maps a zero page over the faulting page
// (so the read completes) and marks the mapping damaged; whoever reads checks the mark after
// reading and reports an error instead of the garbage. Faults elsewhere go to the handler that
// was installed before.
#pragma once
#include <cstddef>

namespace fastfeed {

class BusGuard {
 public:
  // Starts guarding [data, data + size). Returns a slot, or -1 when every slot is taken
  // (the mapping then works unguarded).
  static int add(const void* data, size_t size);
  static void remove(int slot);
  // Whether a read of the slot's mapping hit a missing page since it was added.
  static bool damaged(int slot);
};

}  // namespace fastfeed
