#pragma once
// Shared by the fuzz targets: a scratch directory for readers that take a path, and the one rule
// of every target: anvil::Error is the expected rejection of a bad input, anything else escapes
// to libFuzzer (an uncaught exception aborts, which it records as a crash).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "util/error.h"

namespace anvil::fuzz {

// A private directory for this process, removed at exit: $ANVIL_FUZZ_TMP, else /dev/shm (tmpfs,
// so a file per input costs no disk I/O), else the system temp directory.
inline const std::filesystem::path& scratch_dir() {
  // Never destroyed: the atexit handler runs after static destructors registered later.
  static const std::filesystem::path* const dir = [] {
    std::string base;
    if (const char* e = std::getenv("ANVIL_FUZZ_TMP"); e && *e) base = e;
    else if (::access("/dev/shm", W_OK) == 0) base = "/dev/shm";
    else base = std::filesystem::temp_directory_path().string();
    std::string tmpl = base + "/anvil-fuzz-XXXXXX";
    if (!::mkdtemp(tmpl.data())) {
      std::perror(("mkdtemp " + tmpl).c_str());
      std::abort();
    }
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return new std::filesystem::path(tmpl);
  }();
  return *dir;
}

inline void write_file(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) {
    std::perror(("write " + path.string()).c_str());
    std::abort();
  }
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// The expected rejection. With ANVIL_FUZZ_VERBOSE=1 it is printed (to see why seeds are refused).
inline void rejected(const anvil::Error& e) {
  static const bool verbose = [] {
    const char* v = std::getenv("ANVIL_FUZZ_VERBOSE");
    return v && *v && *v != '0';
  }();
  if (verbose) std::fprintf(stderr, "rejected: %s\n", e.what());
}

// Fails the run (a finding) when an invariant the reader promises does not hold.
#define ANVIL_FUZZ_CHECK(cond)                                                           \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);  \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

}  // namespace anvil::fuzz
