#pragma once
// The one strict YAML reader behind merge configs and training recipes. Files come from
// strangers: loading bounds nesting depth and alias expansion (a "billion laughs" document is
// refused before anything walks it), and every read names the file and line of the bad value.
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <filesystem>
#include <set>
#include <string>

namespace anvil::util {

struct YamlLimits {
  int max_depth = 64;                  // collections inside collections
  int64_t max_expanded_nodes = 100'000;  // nodes with every alias expanded; real configs have < 1,000
};

// Parses `text` (from `where`, for messages); throws anvil::Error naming `where` when it is not
// YAML or exceeds the limits.
YAML::Node load_yaml(const std::string& text, const std::string& where, const YamlLimits& limits = {});

// Checked reads from a loaded document. Every failure is "FILE:LINE: problem".
class YamlReader {
 public:
  explicit YamlReader(std::filesystem::path where) : where_(std::move(where)) {}
  const std::filesystem::path& where() const { return where_; }

  [[noreturn]] void error(const YAML::Node& node, const std::string& what) const;
  // `map` must be a mapping whose keys are all in `allowed`.
  void only_keys(const YAML::Node& map, const std::set<std::string>& allowed, const std::string& context) const;

  std::string string(const YAML::Node& n, const std::string& key) const;
  bool boolean(const YAML::Node& n, const std::string& key) const;
  int64_t integer(const YAML::Node& n, const std::string& key) const;
  // A finite number (NaN and infinities are refused: they pass `x < lo || x > hi` checks).
  double number(const YAML::Node& n, const std::string& key) const;

  // Reads map[key] into `out` when present and not null.
  void read(const YAML::Node& map, const std::string& key, std::string& out) const;
  void read(const YAML::Node& map, const std::string& key, bool& out) const;
  void read(const YAML::Node& map, const std::string& key, int64_t& out, int64_t min, int64_t max = INT64_MAX) const;
  void read(const YAML::Node& map, const std::string& key, double& out, double lo, double hi) const;
  void choice(const YAML::Node& map, const std::string& key, std::string& out, const std::set<std::string>& ok) const;

 private:
  std::filesystem::path where_;
};

}  // namespace anvil::util
