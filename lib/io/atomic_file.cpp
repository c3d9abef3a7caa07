#include "io/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
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

// Temporaries are named ".NAME.tmp-PID.RANDOM" beside NAME, so that the next run writing NAME
// can recognise the leftovers of a killed one (kill -9 runs no handler) by name and owner.
std::string temp_prefix(const fs::path& final_path) { return "." + final_path.filename().string() + ".tmp-"; }

fs::path temp_sibling(const fs::path& final_path) {
  return final_path.parent_path() / (temp_prefix(final_path) + random_suffix());
}

}  // namespace

// Whether the process that wrote a temporary is gone. PIDs are those of this machine's (and
// PID namespace's) processes: on a directory shared with other machines or containers another
// writer's PID means nothing here, so outputs there should not be written concurrently.
int remove_stale_temporaries(const fs::path& final_path) {
  const fs::path parent = final_path.parent_path().empty() ? fs::path(".") : final_path.parent_path();
  const std::string prefix = temp_prefix(final_path);
  std::error_code ec;
  int removed = 0;
  for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.starts_with(prefix)) continue;
    const std::string rest = name.substr(prefix.size());  // "PID.RANDOM", both decimal
    const size_t dot = rest.find('.');
    if (dot == std::string::npos || dot == 0 || dot + 1 == rest.size() ||
        rest.find_first_not_of("0123456789", dot + 1) != std::string::npos)
      continue;  // not ours: e.g. the temporary of a file named "NAME.tmp-5.x"
    long pid = 0;
    if (auto [p, e] = std::from_chars(rest.data(), rest.data() + dot, pid); e != std::errc() || p != rest.data() + dot)
      continue;
    // Only a writer that no longer exists: a live one (another anvil writing here) keeps its file.
    if (pid <= 0 || pid == ::getpid() || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    std::error_code rm;
    fs::remove_all(it->path(), rm);
    if (!rm) ++removed;
  }
  return removed;
}


AtomicFile::AtomicFile(fs::path final_path) : final_path_(std::move(final_path)) {
  fs::path parent = final_path_.parent_path();
  if (!parent.empty() && !fs::is_directory(parent))
    fail(final_path_.string(), "output directory does not exist");
  remove_stale_temporaries(final_path_);
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
  remove_stale_temporaries(final_path_);
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
    // Swap old and new in one step (renameat2 RENAME_EXCHANGE), so that at every moment, a
    // kill -9 included, the final name holds one complete output; the old one then sits under
    // the temporary name and is removed.
    if (::renameat2(AT_FDCWD, temp_path_.c_str(), AT_FDCWD, final_path_.c_str(), RENAME_EXCHANGE) == 0) {
      fs::remove_all(temp_path_, ec);
      unregister_temporary(temp_path_);
      committed_ = true;
      return;
    }
    // A file system without the exchange: move the old directory aside first, so the swap leaves
    // no mixture of old and new files.
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

bool exists_quietly(const fs::path& path) {
  std::error_code ec;
  return fs::exists(path, ec) && !ec;
}

bool is_directory_quietly(const fs::path& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) && !ec;
}

bool is_regular_file_quietly(const fs::path& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec) && !ec;
}

void write_text_file(const fs::path& path, std::string_view text) {
  AtomicFile file(path);
  file.append(text);
  file.commit();
}

std::string read_text_file(const fs::path& path) {
  if (fs::is_directory(path)) fail(path.string(), "is a directory, not a file");
  // A FIFO or device would block or never end.
  if (fs::exists(path) && !fs::is_regular_file(path)) fail(path.string(), "is not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path.string(), "cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(path.string(), "read error");
  return ss.str();
}

}  // namespace anvil::io
