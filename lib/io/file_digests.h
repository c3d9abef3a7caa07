#pragma once
// Sizes and SHA-256 digests of a command's input files, for its model card. A background thread
// reads each file through its memory map while the command reads the same pages for its own
// work, so the disk is read once; the digests are waited for only when the card is written.
#include <cstdint>
#include <filesystem>
#include <future>
#include <string>
#include <vector>

namespace anvil::io {

struct FileDigest {
  std::filesystem::path path;
  uint64_t bytes = 0;
  std::string sha256;
};

// The files a model input consists of: a file itself, or a directory's regular files (weights,
// config, tokenizer; README.md excluded), sorted by name.
std::vector<std::filesystem::path> model_files(const std::filesystem::path& input);

class FileDigests {
 public:
  explicit FileDigests(std::vector<std::filesystem::path> files);
  ~FileDigests();
  FileDigests(const FileDigests&) = delete;
  FileDigests& operator=(const FileDigests&) = delete;
  // Waits for the thread; an unreadable file is an anvil::Error naming it.
  const std::vector<FileDigest>& get();

 private:
  std::future<std::vector<FileDigest>> future_;
  std::vector<FileDigest> result_;
  bool done_ = false;
};

}  // namespace anvil::io
