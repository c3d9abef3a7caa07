#include "io/temp_cleanup.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>

namespace anvil::io {
namespace {

// A fixed table, so that the signal handler needs no allocation or lock. A slot is free (0),
// being written (1) or holds a path (2).
struct Slot {
  std::atomic<int> state{0};
  char path[4096];
};
Slot g_slots[64];

// Removes a file, or a directory and what is inside it (a few levels deep), by system calls.
void remove_path(int dir_fd, const char* name, int depth) {
  if (::unlinkat(dir_fd, name, 0) == 0 || depth == 0) return;
  const int fd = ::openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  if (DIR* dir = ::fdopendir(fd)) {
    while (const dirent* e = ::readdir(dir))
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) remove_path(fd, e->d_name, depth - 1);
    ::closedir(dir);
  } else {
    ::close(fd);
  }
  ::unlinkat(dir_fd, name, AT_REMOVEDIR);
}

void on_signal(int sig) {
  remove_registered_temporaries();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

}  // namespace

void register_temporary(const std::filesystem::path& path) {
  const std::string& s = path.native();
  if (s.size() >= sizeof(Slot::path)) return;  // too long to clean up on a signal; the destructor still does
  for (auto& slot : g_slots) {
    int expected = 0;
    if (!slot.state.compare_exchange_strong(expected, 1)) continue;
    std::memcpy(slot.path, s.c_str(), s.size() + 1);
    slot.state.store(2);
    return;
  }
}

void unregister_temporary(const std::filesystem::path& path) {
  for (auto& slot : g_slots)
    if (slot.state.load() == 2 && path.native() == slot.path) {
      slot.state.store(0);
      return;
    }
}

void remove_registered_temporaries() {
  for (auto& slot : g_slots)
    if (slot.state.load() == 2) remove_path(AT_FDCWD, slot.path, 3);
}

void remove_temporaries_on_signal() {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) std::signal(sig, on_signal);
}

}  // namespace anvil::io
