#include "progress.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace anvil::cli {

bool Progress::enabled() {
  static const bool on = isatty(STDERR_FILENO) && std::getenv("ANVIL_NO_PROGRESS") == nullptr;
  return on;
}

std::string format_duration(double s) {
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%.0fs", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  else std::snprintf(buf, sizeof buf, "%dh%02dm", static_cast<int>(s) / 3600, (static_cast<int>(s) / 60) % 60);
  return buf;
}

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), active_(enabled()),
      start_(std::chrono::steady_clock::now()) {}

Progress::~Progress() { finish(); }

void Progress::update(int64_t done, const std::string& extra) {
  if (!active_) return;
  auto now = std::chrono::steady_clock::now();
  if (drawn_ && done < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  drawn_ = true;
  double elapsed = std::chrono::duration<double>(now - start_).count();
  double frac = total_ > 0 ? static_cast<double>(done) / total_ : 0;
  constexpr int kWidth = 24;
  int filled = static_cast<int>(frac * kWidth);
  std::string bar(filled, '#');
  bar.append(kWidth - filled, '-');
  std::string eta = (done > 0 && done < total_) ? " ETA " + format_duration(elapsed * (total_ - done) / done) : "";
  std::fprintf(stderr, "\r\033[K%s [%s] %3.0f%% %lld/%lld %s%s%s%s", label_.c_str(), bar.c_str(), frac * 100,
               static_cast<long long>(done), static_cast<long long>(total_), unit_.c_str(),
               extra.empty() ? "" : " · ", extra.c_str(), eta.c_str());
  std::fflush(stderr);
}

void Progress::update_bytes(int64_t done, uint64_t bytes) {
  if (!active_) return;
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.0f MB/s", s > 0 ? static_cast<double>(bytes) / s / 1e6 : 0.0);
  update(done, buf);
}

void Progress::finish() {
  if (active_ && drawn_) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }
  drawn_ = false;
}

}  // namespace anvil::cli
