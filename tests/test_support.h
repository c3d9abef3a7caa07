#pragma once
// Where the shared fixtures live (ANVIL_SHARED overrides the default ../shared beside the repo)
// and small helpers for tests.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace anvil::test {

inline std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("ANVIL_SHARED")) return env;
  return ANVIL_DEFAULT_SHARED_DIR;
}

inline std::filesystem::path model_dir(const std::string& name) { return shared_dir() / "models" / name; }

#ifdef ANVIL_TEST_DATA_DIR
// Small test data committed in the repo (tests/data), each with the command that made it.
inline std::filesystem::path data_dir() { return ANVIL_TEST_DATA_DIR; }
#endif

// A fresh empty directory, removed when the object goes away.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() / ("anvil-test-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline std::string read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_bytes(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline size_t count_entries(const std::filesystem::path& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++n;
  return n;
}

}  // namespace anvil::test
