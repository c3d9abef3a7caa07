#include "chat/jinja_json.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "chat/jinja_budget.h"
#include "chat/jinja_text.h"

namespace anvil::chat::jinja {

namespace {

template <typename Json>
Value convert(const Json& j, int depth) {
  // Checked on the way down: the recursion itself must not run away on a hostile document.
  if (depth > kMaxNesting) throw Failure("the JSON nests deeper than " + std::to_string(kMaxNesting) + " levels");
  switch (j.type()) {
    case nlohmann::json::value_t::null:
    case nlohmann::json::value_t::discarded: return Value::none();
    case nlohmann::json::value_t::boolean: return Value::boolean(j.template get<bool>());
    case nlohmann::json::value_t::number_integer: return Value::integer(j.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      const auto u = j.template get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) throw Failure("the integer " + std::to_string(u) + " is too large");
      return Value::integer(static_cast<int64_t>(u));
    }
    case nlohmann::json::value_t::number_float: return Value::number(j.template get<double>());
    case nlohmann::json::value_t::string: return Value::string(j.template get_ref<const std::string&>());
    case nlohmann::json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& item : j) items.push_back(convert(item, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      Dict d;
      for (auto it = j.begin(); it != j.end(); ++it) d.insert(Value::string(it.key()), convert(it.value(), depth + 1));
      return Value::dict(std::move(d));
    }
    case nlohmann::json::value_t::binary: throw Failure("binary JSON values are not supported");
  }
  return Value::none();
}

void append_json_string(std::string& out, std::string_view s, bool ensure_ascii) {
  static const char* hex = "0123456789abcdef";
  auto u_escape = [&](char32_t cp) {
    out += "\\u";
    for (int k = 3; k >= 0; --k) out += hex[(cp >> (4 * k)) & 0xF];
  };
  out += '"';
  for (size_t i = 0; i < s.size();) {
    const char32_t cp = text::next_code_point(s, i);
    switch (cp) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      default: break;
    }
    if (cp < 0x20 || (ensure_ascii && cp >= 0x7F && cp < 0x10000)) {
      u_escape(cp);
    } else if (ensure_ascii && cp >= 0x10000) {
      const char32_t v = cp - 0x10000;
      u_escape(0xD800 + (v >> 10));
      u_escape(0xDC00 + (v & 0x3FF));
    } else {
      text::append_utf8(out, cp);
    }
  }
  out += '"';
}

std::string json_float(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  return format_float(d);
}

struct Writer {
  std::string& out;
  const JsonStyle& style;
  size_t limit;

  void check() const {
    if (out.size() > limit) throw Failure("the JSON is larger than " + std::to_string(limit) + " bytes");
  }

  void newline(int level) {
    if (!style.indent) return;
    out += '\n';
    for (int i = 0; i < level; ++i) out += *style.indent;
  }

  static std::string key_text(const Value& key) {
    switch (key.type()) {
      case Value::Type::String: return key.str();
      case Value::Type::Bool: return key.as_bool() ? "true" : "false";
      case Value::Type::None: return "null";
      case Value::Type::Int: return std::to_string(key.as_int());
      case Value::Type::Float: return json_float(key.as_float());
      default: throw Failure(std::string("keys must be str, int, float, bool or None, not ") + type_name(key));
    }
  }

  void write(const Value& v, int level) {
    if (level > kMaxNesting) throw Failure("the value nests too deeply for JSON");
    switch (v.type()) {
      case Value::Type::None: out += "null"; break;
      case Value::Type::Bool: out += v.as_bool() ? "true" : "false"; break;
      case Value::Type::Int: out += std::to_string(v.as_int()); break;
      case Value::Type::Float: out += json_float(v.as_float()); break;
      case Value::Type::String: append_json_string(out, v.str(), style.ensure_ascii); break;
      case Value::Type::List: {
        if (!v.is_list()) throw Failure(std::string("Object of type ") + type_name(v) + " is not JSON serializable");
        const auto& items = v.list().items;
        if (items.empty()) {
          out += "[]";
          break;
        }
        out += '[';
        for (size_t i = 0; i < items.size(); ++i) {
          if (i) out += style.item_separator;
          newline(level + 1);
          write(items[i], level + 1);
          check();
        }
        newline(level);
        out += ']';
        break;
      }
      case Value::Type::Dict: {
        const Dict& d = v.dict();
        if (d.empty()) {
          out += "{}";
          break;
        }
        std::vector<const std::pair<Value, Value>*> items;
        for (const auto& item : d.items()) items.push_back(&item);
        if (style.sort_keys)
          std::stable_sort(items.begin(), items.end(),
                           [](const auto* a, const auto* b) { return compare(a->first, b->first, "<") < 0; });
        out += '{';
        for (size_t i = 0; i < items.size(); ++i) {
          if (i) out += style.item_separator;
          newline(level + 1);
          append_json_string(out, key_text(items[i]->first), style.ensure_ascii);
          out += style.key_separator;
          write(items[i]->second, level + 1);
          check();
        }
        newline(level);
        out += '}';
        break;
      }
      default: throw Failure(std::string("Object of type ") + type_name(v) + " is not JSON serializable");
    }
    check();
  }
};

}  // namespace

Value from_json(const nlohmann::json& j) { return convert(j, 0); }
Value from_json(const nlohmann::ordered_json& j) { return convert(j, 0); }

void append_json(std::string& out, const Value& v, const JsonStyle& style, size_t limit) {
  const size_t before = out.size();
  Writer{out, style, limit}.write(v, 0);
  spend_bytes(out.size() - before);
}

}  // namespace anvil::chat::jinja
