#pragma once
// A one-line progress bar on stderr: shown only when stderr is a terminal, so piped or logged
// runs stay quiet. Redraws at most ten times a second.
#include <chrono>
#include <cstdint>
#include <string>

namespace anvil::cli {

class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit);
  ~Progress();
  // `extra` is appended to the line (e.g. "6500 tok/s").
  void update(int64_t done, const std::string& extra = "");
  // update() with the byte throughput since the bar was created, e.g. "350 MB/s".
  void update_bytes(int64_t done, uint64_t bytes);
  void finish();
  static bool enabled();

 private:
  std::string label_, unit_;
  int64_t total_;
  bool active_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

std::string format_duration(double seconds);

}  // namespace anvil::cli
