#include "util/json_reader.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "util/error.h"

namespace anvil::util {

void check_json_depth(std::string_view text, const std::string& where, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > max_depth)
        fail(where, "JSON nests deeper than " + std::to_string(max_depth) + " levels (at byte " + std::to_string(i) + ")");
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
}

template <typename Json>
static Json parse_checked(std::string_view text, const std::string& where, int max_depth) {
  check_json_depth(text, where, max_depth);
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    fail(where, std::string("not valid JSON (") + e.what() + ")");
  }
}

nlohmann::json parse_json(std::string_view text, const std::string& where, int max_depth) {
  return parse_checked<nlohmann::json>(text, where, max_depth);
}
nlohmann::ordered_json parse_ordered_json(std::string_view text, const std::string& where, int max_depth) {
  return parse_checked<nlohmann::ordered_json>(text, where, max_depth);
}

void for_each_json_line(const std::filesystem::path& file,
                        const std::function<void(const nlohmann::json& object, const std::string& where)>& each) {
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec)) fail(file.string(), "is a directory, not a JSON-lines file");
  std::ifstream in(file, std::ios::binary);
  if (!in) fail(file.string(), "cannot be read");
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = file.string() + ":" + std::to_string(number);
    const nlohmann::json j = parse_json(line, where);
    if (!j.is_object()) fail(where, "not a JSON object");
    each(j, where);
  }
}

std::string json_brief(const nlohmann::json& value) {
  if (value.is_array()) return "a list";
  if (value.is_object()) return "an object";
  std::string s = value.dump();
  return s.size() > 40 ? s.substr(0, 37) + "..." : s;
}

JsonFields::JsonFields(const nlohmann::json& object, std::string where, std::string context)
    : j_(object), where_(std::move(where)), context_(std::move(context)) {
  if (!j_.is_object()) {
    std::string what = context_.empty() ? std::string("the file") : "\"" + context_ + "\"";
    if (what.ends_with(".\"")) what.erase(what.size() - 2, 1);  // "rope_scaling." -> "rope_scaling"
    fail(where_, what + " must be a JSON object, not " + json_brief(j_));
  }
}

void JsonFields::error(const char* key, const std::string& problem) const {
  fail(where_, "\"" + context_ + key + "\" " + problem);
}

const nlohmann::json* JsonFields::find(const char* key) const {
  auto it = j_.find(key);
  return it == j_.end() || it->is_null() ? nullptr : &*it;
}
bool JsonFields::has(const char* key) const { return find(key) != nullptr; }

std::optional<int64_t> JsonFields::optional_integer(const char* key, int64_t lo, int64_t hi) const {
  const nlohmann::json* v = find(key);
  if (!v) return std::nullopt;
  auto range = [&] { return "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]"; };
  // JSON has one number type: 64.0 is accepted as 64 (as Python's json reads it as a float, and
  // transformers then uses it as an int), 64.5 is not.
  int64_t out = 0;
  if (v->is_number_integer()) {
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      error(key, "must be " + range() + ", not " + v->dump());
    out = v->get<int64_t>();
  } else if (v->is_number_float()) {
    const double d = v->get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9.0e15) error(key, "must be " + range() + ", not " + v->dump());
    out = static_cast<int64_t>(d);
  } else {
    error(key, "must be " + range() + ", not " + json_brief(*v));
  }
  if (out < lo || out > hi) error(key, "must be " + range() + ", not " + std::to_string(out));
  return out;
}

int64_t JsonFields::integer(const char* key, int64_t lo, int64_t hi) const {
  if (auto v = optional_integer(key, lo, hi)) return *v;
  error(key, "is missing (an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "])");
}

int64_t JsonFields::integer_or(const char* key, int64_t fallback, int64_t lo, int64_t hi) const {
  return optional_integer(key, lo, hi).value_or(fallback);
}

double JsonFields::number_or(const char* key, double fallback, double lo, double hi) const {
  const nlohmann::json* v = find(key);
  if (!v) return fallback;
  std::ostringstream range;
  range << "a finite number in [" << lo << ", " << hi << "]";
  if (!v->is_number()) error(key, "must be " + range.str() + ", not " + json_brief(*v));
  const double d = v->get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) error(key, "must be " + range.str() + ", not " + v->dump());
  return d;
}

bool JsonFields::boolean_or(const char* key, bool fallback) const {
  const nlohmann::json* v = find(key);
  if (!v) return fallback;
  if (!v->is_boolean()) error(key, "must be true or false, not " + json_brief(*v));
  return v->get<bool>();
}

std::string JsonFields::string_or(const char* key, const std::string& fallback) const {
  const nlohmann::json* v = find(key);
  if (!v) return fallback;
  if (!v->is_string()) error(key, "must be a string, not " + json_brief(*v));
  return v->get<std::string>();
}

}  // namespace anvil::util
