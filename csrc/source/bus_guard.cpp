#include "source/bus_guard.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <mutex>

namespace fastfeed {

namespace {

// A fixed table: the signal handler must not allocate or lock.
constexpr int kSlots = 4096;

struct Slot {
  std::atomic<uintptr_t> begin{0};
  std::atomic<uintptr_t> end{0};
  std::atomic<bool> damaged{false};
};

Slot g_slots[kSlots];
std::mutex g_add_mu;  // add() and remove() run outside the handler
struct sigaction g_previous {};
uintptr_t g_page_size = 4096;
std::once_flag g_installed;

void forward(int sig, siginfo_t* info, void* context) {
  if ((g_previous.sa_flags & SA_SIGINFO) != 0 && g_previous.sa_sigaction != nullptr) {
    g_previous.sa_sigaction(sig, info, context);
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN && g_previous.sa_handler != nullptr) {
    g_previous.sa_handler(sig);
  } else {
    // The default action: returning re-runs the faulting access, which now kills the process.
    ::signal(sig, SIG_DFL);
  }
}

void on_sigbus(int sig, siginfo_t* info, void* context) {
  const auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
  for (Slot& s : g_slots) {
    const uintptr_t begin = s.begin.load(std::memory_order_acquire);
    if (begin == 0 || addr < begin || addr >= s.end.load(std::memory_order_acquire)) continue;
    // Marked first: once the zero page is in, other threads read it without a fault, and
    // one of them checking the mark after its read must see it set.
    s.damaged.store(true, std::memory_order_seq_cst);
    // mmap is a plain system call, safe in a signal handler.
    void* page = reinterpret_cast<void*>(addr & ~(g_page_size - 1));
    ::mmap(page, g_page_size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    return;
  }
  forward(sig, info, context);
}

void install() {
  g_page_size = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  struct sigaction sa {};
  sa.sa_sigaction = on_sigbus;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  ::sigaction(SIGBUS, &sa, &g_previous);
}

}  // namespace

int BusGuard::add(const void* data, size_t size) {
  if (data == nullptr || size == 0) return -1;
  std::call_once(g_installed, install);
  std::lock_guard<std::mutex> lk(g_add_mu);
  for (int i = 0; i < kSlots; ++i) {
    if (g_slots[i].begin.load(std::memory_order_relaxed) != 0) continue;
    const auto begin = reinterpret_cast<uintptr_t>(data);
    g_slots[i].damaged.store(false, std::memory_order_relaxed);
    g_slots[i].end.store(begin + size, std::memory_order_release);
    g_slots[i].begin.store(begin, std::memory_order_release);
    return i;
  }
  return -1;
}

void BusGuard::remove(int slot) {
  if (slot < 0) return;
  std::lock_guard<std::mutex> lk(g_add_mu);
  g_slots[slot].begin.store(0, std::memory_order_release);
  g_slots[slot].end.store(0, std::memory_order_release);
}

bool BusGuard::damaged(int slot) {
  return slot >= 0 && g_slots[slot].damaged.load(std::memory_order_acquire);
}

}  // namespace fastfeed
