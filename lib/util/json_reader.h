#pragma once
// Checked reads of JSON from strangers' files (config.json, tokenizer.json, adapter_config.json,
// trainer_state.json, ...). A value of the wrong type, out of range or not finite is an
// anvil::Error naming the file and the key, never a nlohmann type_error or a silent default.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace anvil::util {

// Nesting of arrays/objects deeper than this is refused before parsing: no real config or
// tokenizer nests past ~10, and readers that recurse on the tree must not be handed 50,000.
inline constexpr int kMaxJsonDepth = 128;

// Throws anvil::Error(where, ...) when `text` nests deeper than `max_depth`.
void check_json_depth(std::string_view text, const std::string& where, int max_depth = kMaxJsonDepth);

// Parses `text`; not JSON, or nested too deep, is an anvil::Error naming `where`.
nlohmann::json parse_json(std::string_view text, const std::string& where, int max_depth = kMaxJsonDepth);
nlohmann::ordered_json parse_ordered_json(std::string_view text, const std::string& where,
                                          int max_depth = kMaxJsonDepth);

// The fields of one JSON object. `context` prefixes key names in messages (e.g. "rope_scaling.").
class JsonFields {
 public:
  JsonFields(const nlohmann::json& object, std::string where, std::string context = "");

  bool has(const char* key) const;  // present and not null
  const nlohmann::json* find(const char* key) const;  // present and not null, else nullptr

  // Absent or null: the fallback (or nullopt). Present with the wrong type or out of range: an error.
  std::optional<int64_t> optional_integer(const char* key, int64_t lo, int64_t hi) const;
  int64_t integer(const char* key, int64_t lo, int64_t hi) const;  // required
  int64_t integer_or(const char* key, int64_t fallback, int64_t lo, int64_t hi) const;
  double number_or(const char* key, double fallback, double lo, double hi) const;  // finite, in [lo, hi]
  bool boolean_or(const char* key, bool fallback) const;
  std::string string_or(const char* key, const std::string& fallback) const;

  [[noreturn]] void error(const char* key, const std::string& problem) const;
  const std::string& where() const { return where_; }

 private:
  const nlohmann::json& j_;
  std::string where_, context_;
};

// Each non-blank line of a JSON-lines file, parsed, with its "FILE:LINE" for messages. A
// directory, an unreadable file, or a line that is not JSON or not a JSON object is an
// anvil::Error naming the file (and the line).
void for_each_json_line(const std::filesystem::path& file,
                        const std::function<void(const nlohmann::json& object, const std::string& where)>& each);

// A short rendering of a JSON value for messages ("\"64\"", "true", "[...]").
std::string json_brief(const nlohmann::json& value);

}  // namespace anvil::util
