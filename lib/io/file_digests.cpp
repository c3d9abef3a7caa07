#include "io/file_digests.h"

#include <algorithm>

#include "io/atomic_file.h"
#include "io/mapped_file.h"
#include "util/error.h"
#include "util/sha256.h"

namespace anvil::io {

std::vector<std::filesystem::path> model_files(const std::filesystem::path& input) {
  std::vector<std::filesystem::path> out;
  if (!is_directory_quietly(input)) return {input};
  for (const auto& e : std::filesystem::directory_iterator(input)) {
    if (!e.is_regular_file() || e.path().filename() == "README.md") continue;
    const std::string name = e.path().filename().string();
    if (name.starts_with(".")) continue;  // temporaries and hidden files
    out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

FileDigests::FileDigests(std::vector<std::filesystem::path> files) {
  future_ = std::async(std::launch::async, [files = std::move(files)] {
    std::vector<FileDigest> out;
    for (const auto& f : files) {
      const MappedFile map(f);
      util::Sha256 h;
      // In 8 MiB steps, the same order the readers use, so the two walk the page cache together.
      const std::span<const uint8_t> bytes(map.data(), map.size());
      // Each step's pages are dropped from this process once hashed (they stay in the page cache):
      // hashing a 2.5 GB input must not make a merge's resident memory 2.5 GB.
      for (size_t at = 0; at < bytes.size(); at += size_t{8} << 20) {
        const auto step = bytes.subspan(at, std::min(bytes.size() - at, size_t{8} << 20));
        h.update(step);
        release_pages(step.data(), step.size());
      }
      out.push_back({f, bytes.size(), h.hex()});
    }
    return out;
  });
}

FileDigests::~FileDigests() {
  if (future_.valid()) {
    try {
      future_.get();
    } catch (...) {
    }
  }
}

const std::vector<FileDigest>& FileDigests::get() {
  if (!done_) {
    result_ = future_.get();
    done_ = true;
  }
  return result_;
}

}  // namespace anvil::io
