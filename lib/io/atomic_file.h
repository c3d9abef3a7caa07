#pragma once
// Outputs appear whole or not at all: everything is written to a temporary sibling and renamed
// into place on commit(). Destroying an uncommitted AtomicFile/AtomicDir removes the temporary.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <mutex>
#include <string_view>

namespace anvil::io {

class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path final_path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // Positional write: safe to call from several threads on disjoint ranges.
  void write_at(uint64_t offset, std::span<const uint8_t> bytes);
  void append(std::span<const uint8_t> bytes);
  void append(std::string_view text);
  void commit();  // fsync + rename over final_path
  const std::filesystem::path& final_path() const { return final_path_; }

 private:
  std::filesystem::path final_path_;
  std::filesystem::path temp_path_;
  int fd_ = -1;
  uint64_t append_offset_ = 0;
  // Writers take turns: concurrent pwrites to one file only spin on the kernel's inode lock.
  std::mutex write_mutex_;
};

// A directory built under a temporary name and renamed into place on commit().
// An existing destination is replaced only at commit time.
class AtomicDir {
 public:
  explicit AtomicDir(std::filesystem::path final_path);
  ~AtomicDir();
  AtomicDir(const AtomicDir&) = delete;
  AtomicDir& operator=(const AtomicDir&) = delete;

  const std::filesystem::path& temp_path() const { return temp_path_; }
  void commit();

 private:
  std::filesystem::path final_path_;
  std::filesystem::path temp_path_;
  bool committed_ = false;
};

// Removes the temporaries that killed runs left beside `final_path` (".NAME.tmp-PID.*" whose
// PID is gone); AtomicFile and AtomicDir call it before writing. Returns how many it removed.
int remove_stale_temporaries(const std::filesystem::path& final_path);

// File tests for paths taken from strangers' files (shard names, model and data paths): an
// over-long or unreadable name is simply not there, instead of a std::filesystem exception.
bool exists_quietly(const std::filesystem::path& path);
bool is_directory_quietly(const std::filesystem::path& path);
bool is_regular_file_quietly(const std::filesystem::path& path);

// Writes a small text file atomically.
void write_text_file(const std::filesystem::path& path, std::string_view text);
std::string read_text_file(const std::filesystem::path& path);

}  // namespace anvil::io
