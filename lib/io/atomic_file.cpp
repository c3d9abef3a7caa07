#include "io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "io/temp_cleanup.h"
#include "util/error.h"

namespace anvil::io {
namespace fs = std::filesystem;
namespace {

std::string random_suffix() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::to_string(::getpid()) + "." + std::to_string(rng() % 1000000007ull);
}

fs::path temp_sibling(const fs::path& final_path) {
  fs::path name = final_path.filename();
  return final_path.parent_path() / ("." + name.string() + ".tmp-" + random_suffix());
}

}  // namespace

AtomicFile::AtomicFile(fs::path final_path) : final_path_(std::move(final_path)) {
  fs::path parent = final_path_.parent_path();
  if (!parent.empty() && !fs::is_directory(parent))
    fail(final_path_.string(), "output directory does not exist");
  temp_path_ = temp_sibling(final_path_);
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) fail(final_path_.string(), std::string("cannot create: ") + std::strerror(errno));
  register_temporary(temp_path_);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    std::error_code ec;
    fs::remove(temp_path_, ec);
    unregister_temporary(temp_path_);
  }
}

void AtomicFile::write_at(uint64_t offset, std::span<const uint8_t> bytes) {
  std::lock_guard lock(write_mutex_);
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::pwrite(fd_, bytes.data() + done, bytes.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(final_path_.string(), std::string("write failed: ") + std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
}

void AtomicFile::append(std::span<const uint8_t> bytes) {
  write_at(append_offset_, bytes);
  append_offset_ += bytes.size();
}

void AtomicFile::append(std::string_view text) {
  append(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

void AtomicFile::commit() {
  if (fd_ < 0) fail(final_path_.string(), "already committed");
  if (::fsync(fd_) != 0) fail(final_path_.string(), std::string("fsync failed: ") + std::strerror(errno));
  ::close(fd_);
  fd_ = -1;
  std::error_code ec;
  fs::rename(temp_path_, final_path_, ec);
  unregister_temporary(temp_path_);
  if (ec) {
    fs::remove(temp_path_, ec);
    fail(final_path_.string(), "cannot rename temporary file into place");
  }
}

AtomicDir::AtomicDir(fs::path final_path) : final_path_(std::move(final_path)) {
  if (final_path_.filename().empty()) final_path_ = final_path_.parent_path();
  fs::path parent = final_path_.parent_path();
  if (!parent.empty() && !fs::is_directory(parent))
    fail(final_path_.string(), "parent directory does not exist");
  temp_path_ = temp_sibling(final_path_);
  std::error_code ec;
  fs::create_directory(temp_path_, ec);
  if (ec) fail(final_path_.string(), "cannot create temporary directory: " + ec.message());
  register_temporary(temp_path_);
}

AtomicDir::~AtomicDir() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(temp_path_, ec);
    unregister_temporary(temp_path_);
  }
}

void AtomicDir::commit() {
  std::error_code ec;
  if (fs::exists(final_path_)) {
    // Move the old directory aside first so that the swap leaves no mixture of old and new files.
    fs::path old = temp_sibling(final_path_);
    fs::rename(final_path_, old, ec);
    if (ec) fail(final_path_.string(), "cannot replace existing output: " + ec.message());
    fs::rename(temp_path_, final_path_, ec);
    if (ec) fail(final_path_.string(), "cannot rename temporary directory into place: " + ec.message());
    fs::remove_all(old, ec);
  } else {
    fs::rename(temp_path_, final_path_, ec);
    if (ec) fail(final_path_.string(), "cannot rename temporary directory into place: " + ec.message());
  }
  unregister_temporary(temp_path_);
  committed_ = true;
}

void write_text_file(const fs::path& path, std::string_view text) {
  AtomicFile file(path);
  file.append(text);
  file.commit();
}

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path.string(), "cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(path.string(), "read error");
  return ss.str();
}

}  // namespace anvil::io
