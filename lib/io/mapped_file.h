#pragma once
// Read-only memory map of a whole file. Tensors are served as views into it (zero copy).
#include <cstddef>
#include <cstdint>
#include <filesystem>

namespace anvil::io {

class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  void release();
  std::filesystem::path path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Drops the resident pages of a mapped range (whole pages inside it) so that streaming through a
// large file does not grow the process's resident set; touching them again re-reads the file.
void release_pages(const void* begin, size_t size);

}  // namespace anvil::io
