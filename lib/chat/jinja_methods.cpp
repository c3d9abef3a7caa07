// Methods of str, dict, list and tuple as templates call them (message.content.strip(),
// tool.items(), ...), the global functions, and argument binding for all builtins.
#include <sys/time.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <ctime>

#include "chat/jinja_builtins.h"
#include "chat/jinja_eval.h"
#include "chat/jinja_ops.h"
#include "chat/jinja_text.h"

namespace anvil::chat::jinja {

// ---------------------------------------------------------------------------------------------
// Params

Params::Params(std::string_view function, const CallArgs& args, std::initializer_list<std::string_view> names,
               bool rest)
    : function_(function), names_(names), slots_(names.size(), nullptr) {
  for (size_t i = 0; i < args.positional.size(); ++i) {
    if (i < names_.size()) slots_[i] = &args.positional[i];
    else if (rest) rest_.push_back(&args.positional[i]);
    else
      type_error("takes at most " + std::to_string(names_.size()) + " argument(s) (" +
                 std::to_string(args.positional.size()) + " given)");
  }
  for (const auto& [name, value] : args.keywords) {
    const auto it = std::find(names_.begin(), names_.end(), name);
    if (it == names_.end()) type_error("got an unexpected keyword argument '" + name + "'");
    const auto i = static_cast<size_t>(it - names_.begin());
    if (slots_[i]) type_error("got multiple values for argument '" + name + "'");
    slots_[i] = &value;
  }
}

void Params::type_error(const std::string& what) const { throw Failure(std::string(function_) + "(): " + what); }

int64_t Params::integer(size_t i, int64_t fallback) const {
  const Value* v = slots_[i];
  if (!v || v->is_none()) return fallback;
  if (!v->is_int_like()) type_error("'" + std::string(names_[i]) + "' must be an integer, not " + type_name(*v));
  return v->as_int();
}

bool Params::boolean(size_t i, bool fallback) const { return slots_[i] ? truthy(*slots_[i]) : fallback; }

std::optional<std::string> Params::string(size_t i) const {
  const Value* v = slots_[i];
  if (!v || v->is_none()) return std::nullopt;
  if (!v->is_string()) type_error("'" + std::string(names_[i]) + "' must be a string, not " + type_name(*v));
  return v->str();
}

namespace {

using MethodFn = Value (*)(Interpreter& in, const Value& self, CallArgs& args);

struct MethodDef {
  std::string_view name;
  MethodFn fn;  // null: the immutable sandbox refuses it (mutating methods)
};

Value markup_of(const Value& v) {
  if (v.is_string()) return Value::markup(v.str());
  if (!v.is_list()) return v;
  std::vector<Value> items;
  for (const Value& item : v.list().items) items.push_back(markup_of(item));
  return Value::list(std::move(items), v.list().tuple);
}

Value escaped(const Value& v) {
  return v.is_string() && !v.is_markup() ? Value::markup(text::html_escape(v.str())) : v;
}

// A str method called on Markup, as markupsafe wraps them: the string arguments are escaped and
// string results are Markup again.
Value call_on_markup(Interpreter& in, const Value& self, const MethodDef& def, CallArgs& args) {
  static constexpr std::string_view escaping[] = {
      "strip",   "lstrip", "rstrip", "upper", "lower", "title",        "capitalize",   "swapcase", "casefold",
      "replace", "center", "ljust",  "rjust", "zfill", "removeprefix", "removesuffix", "format"};
  static constexpr std::string_view splitting[] = {"split", "rsplit", "splitlines", "partition", "rpartition"};
  if (std::find(std::begin(escaping), std::end(escaping), def.name) != std::end(escaping)) {
    CallArgs safe;
    for (const Value& v : args.positional) safe.positional.push_back(escaped(v));
    for (const auto& [k, v] : args.keywords) safe.keywords.emplace_back(k, escaped(v));
    return markup_of(def.fn(in, self, safe));
  }
  if (std::find(std::begin(splitting), std::end(splitting), def.name) != std::end(splitting))
    return markup_of(def.fn(in, self, args));
  if (def.name == "join" && args.positional.size() == 1) {
    std::vector<Value> items;
    for (const Value& v : iteration_list(in, args.positional[0]).list().items) items.push_back(escaped(v));
    CallArgs safe{{Value::list(std::move(items))}, {}};
    return markup_of(def.fn(in, self, safe));
  }
  return def.fn(in, self, args);
}

class BoundMethod : public Callable {
 public:
  BoundMethod(Value self, const MethodDef& def) : self_(std::move(self)), def_(def) {}
  Value call(Interpreter& in, CallArgs& args) const override {
    return self_.is_markup() ? call_on_markup(in, self_, def_, args) : def_.fn(in, self_, args);
  }
  std::string repr() const override {
    return "<built-in method " + std::string(def_.name) + " of " + type_name(self_) + " object>";
  }

 private:
  Value self_;
  const MethodDef& def_;
};

Value str_result(Interpreter& in, std::string s) {
  in.spend_bytes(s.size());
  return Value::string(std::move(s));
}

Value string_list(Interpreter& in, std::vector<std::string> parts) {
  std::vector<Value> items;
  items.reserve(parts.size());
  for (auto& p : parts) items.push_back(Value::string(std::move(p)));
  in.spend_steps(static_cast<int64_t>(items.size()));
  return Value::list(std::move(items));
}

// Python's optional start/end code point bounds of find, count, startswith, ...: the byte range.
std::pair<size_t, size_t> byte_range(const std::string& s, const Params& p, size_t start_slot) {
  if (!p.has(start_slot) && !p.has(start_slot + 1)) return {0, s.size()};
  const auto offsets = text::code_point_offsets(s);
  const auto n = static_cast<int64_t>(offsets.size()) - 1;
  auto norm = [&](int64_t x) { return std::clamp<int64_t>(x < 0 ? x + n : x, 0, n); };
  const int64_t b = norm(p.integer(start_slot, 0)), e = norm(p.integer(start_slot + 1, n));
  if (e < b) return {offsets[static_cast<size_t>(b)], offsets[static_cast<size_t>(b)]};
  return {offsets[static_cast<size_t>(b)], offsets[static_cast<size_t>(e)]};
}

int64_t code_points_before(const std::string& s, size_t byte) {
  return static_cast<int64_t>(text::code_point_count(std::string_view(s).substr(0, byte)));
}

const std::string& string_arg(const Params& p, size_t i, const char* what) {
  if (!p.has(i) || !p.get(i)->is_string()) p.type_error(std::string(what) + " must be a string");
  return p.get(i)->str();
}

// ---- str

Value strip_method(Interpreter& in, const Value& self, CallArgs& args, text::Side side, const char* name) {
  Params p(name, args, {"chars"});
  const auto chars = p.string(0);
  return Value::string(std::string(chars ? text::strip(self.str(), side, *chars) : text::strip(self.str(), side)));
}
Value m_strip(Interpreter& in, const Value& s, CallArgs& a) {
  return strip_method(in, s, a, text::Side::Both, "strip");
}
Value m_lstrip(Interpreter& in, const Value& s, CallArgs& a) {
  return strip_method(in, s, a, text::Side::Left, "lstrip");
}
Value m_rstrip(Interpreter& in, const Value& s, CallArgs& a) {
  return strip_method(in, s, a, text::Side::Right, "rstrip");
}

Value split_method(Interpreter& in, const Value& self, CallArgs& args, bool from_right) {
  Params p(from_right ? "rsplit" : "split", args, {"sep", "maxsplit"});
  const auto sep = p.string(0);
  if (sep && sep->empty()) throw Failure("empty separator");
  const long maxsplit = static_cast<long>(p.integer(1, -1));
  const std::string* sep_ptr = sep ? &*sep : nullptr;
  return string_list(
      in, from_right ? text::rsplit(self.str(), sep_ptr, maxsplit) : text::split(self.str(), sep_ptr, maxsplit));
}
Value m_split(Interpreter& in, const Value& s, CallArgs& a) { return split_method(in, s, a, false); }
Value m_rsplit(Interpreter& in, const Value& s, CallArgs& a) { return split_method(in, s, a, true); }

Value m_splitlines(Interpreter& in, const Value& self, CallArgs& args) {
  Params p("splitlines", args, {"keepends"});
  if (p.boolean(0, false)) throw Failure("splitlines(keepends=True) is not supported");
  return string_list(in, text::splitlines(self.str()));
}

Value affix_method(Interpreter& in, const Value& self, CallArgs& args, bool prefix) {
  Params p(prefix ? "startswith" : "endswith", args, {prefix ? "prefix" : "suffix", "start", "end"});
  if (!p.has(0)) p.type_error("takes at least 1 argument (0 given)");
  const auto [b, e] = byte_range(self.str(), p, 1);
  const std::string_view s = std::string_view(self.str()).substr(b, e - b);
  auto test = [&](const Value& v) {
    if (!v.is_string()) p.type_error(std::string("first arg must be str or a tuple of str, not ") + type_name(v));
    return prefix ? s.starts_with(v.str()) : s.ends_with(v.str());
  };
  const Value& arg = *p.get(0);
  if (arg.is_list() && arg.list().tuple) {
    for (const Value& v : arg.list().items)
      if (test(v)) return Value::boolean(true);
    return Value::boolean(false);
  }
  (void)in;
  return Value::boolean(test(arg));
}
Value m_startswith(Interpreter& in, const Value& s, CallArgs& a) { return affix_method(in, s, a, true); }
Value m_endswith(Interpreter& in, const Value& s, CallArgs& a) { return affix_method(in, s, a, false); }

Value m_upper(Interpreter& in, const Value& s, CallArgs& a) {
  return Params("upper", a, {}), str_result(in, text::upper(s.str()));
}
Value m_lower(Interpreter& in, const Value& s, CallArgs& a) {
  return Params("lower", a, {}), str_result(in, text::lower(s.str()));
}
Value m_casefold(Interpreter& in, const Value& s, CallArgs& a) {
  return Params("casefold", a, {}), str_result(in, text::lower(s.str()));
}
Value m_title(Interpreter& in, const Value& s, CallArgs& a) {
  return Params("title", a, {}), str_result(in, text::python_title(s.str()));
}
Value m_capitalize(Interpreter& in, const Value& s, CallArgs& a) {
  return Params("capitalize", a, {}), str_result(in, text::capitalize(s.str()));
}
Value m_swapcase(Interpreter& in, const Value& self, CallArgs& a) {
  Params("swapcase", a, {});
  std::string out;
  const std::string& s = self.str();
  for (size_t i = 0; i < s.size();) {
    const char32_t cp = text::next_code_point(s, i);
    const char32_t up = text::to_upper(cp);
    text::append_utf8(out, up != cp ? up : text::to_lower(cp));
  }
  return str_result(in, std::move(out));
}

Value m_replace(Interpreter& in, const Value& self, CallArgs& args) {
  Params p("replace", args, {"old", "new", "count"});
  const std::string& old = string_arg(p, 0, "old");
  const std::string& repl = string_arg(p, 1, "new");
  auto out = text::replace(self.str(), old, repl, static_cast<long>(p.integer(2, -1)), in.limits().max_output);
  if (!out) throw Failure("the replaced string is larger than " + std::to_string(in.limits().max_output) + " bytes");
  return str_result(in, std::move(*out));
}

// find/rfind/index/rindex: the code point index of `sub`, or -1 / ValueError.
Value find_method_impl(Interpreter& in, const Value& self, CallArgs& args, const char* name, bool right, bool raise) {
  Params p(name, args, {"sub", "start", "end"});
  const std::string& sub = string_arg(p, 0, "sub");
  const std::string& s = self.str();
  const auto [b, e] = byte_range(s, p, 1);
  const std::string_view range = std::string_view(s).substr(b, e - b);
  const size_t at = right ? text::rfind(range, sub) : text::find(range, sub, 0);
  if (at == std::string_view::npos) {
    if (raise) throw Failure("substring not found");
    return Value::integer(-1);
  }
  return Value::integer(code_points_before(s, b + at));
}
Value m_find(Interpreter& in, const Value& s, CallArgs& a) { return find_method_impl(in, s, a, "find", false, false); }
Value m_rfind(Interpreter& in, const Value& s, CallArgs& a) { return find_method_impl(in, s, a, "rfind", true, false); }
Value m_index(Interpreter& in, const Value& s, CallArgs& a) { return find_method_impl(in, s, a, "index", false, true); }
Value m_rindex(Interpreter& in, const Value& s, CallArgs& a) {
  return find_method_impl(in, s, a, "rindex", true, true);
}

Value m_str_count(Interpreter& in, const Value& self, CallArgs& args) {
  Params p("count", args, {"sub", "start", "end"});
  const std::string& sub = string_arg(p, 0, "sub");
  const auto [b, e] = byte_range(self.str(), p, 1);
  return Value::integer(static_cast<int64_t>(text::count(std::string_view(self.str()).substr(b, e - b), sub)));
}

Value m_join(Interpreter& in, const Value& self, CallArgs& args) {
  Params p("join", args, {"iterable"});
  if (!p.has(0)) p.type_error("takes exactly one argument (0 given)");
  const Value items = iteration_list(in, *p.get(0));
  std::string out;
  size_t i = 0;
  for (const Value& v : items.list().items) {
    if (!v.is_string())
      throw Failure("sequence item " + std::to_string(i) + ": expected str instance, " + type_name(v) + " found");
    if (i++) out += self.str();
    out += v.str();
    if (out.size() > in.limits().max_output) throw Failure("the joined string is too large");
  }
  in.spend_steps(static_cast<int64_t>(i));
  return str_result(in, std::move(out));
}

// str.format: {} {0} {name}, attribute and index lookups, !r/!s, and common format specs.
std::string format_spec(Interpreter& in, const Value& v, std::string_view spec) {
  char fill = ' ', align = 0, sign = '-';
  bool alternate = false, zero = false;
  int width = 0, precision = -1;
  char type = 0;
  size_t i = 0;
  if (spec.size() >= 2 && std::string_view("<>^=").find(spec[1]) != std::string_view::npos)
    fill = spec[0], align = spec[1], i = 2;
  else if (!spec.empty() && std::string_view("<>^=").find(spec[0]) != std::string_view::npos) align = spec[0], i = 1;
  if (i < spec.size() && (spec[i] == '+' || spec[i] == '-' || spec[i] == ' ')) sign = spec[i++];
  if (i < spec.size() && spec[i] == '#') alternate = true, ++i;
  if (i < spec.size() && spec[i] == '0') zero = true, ++i;
  for (; i < spec.size() && std::isdigit(static_cast<unsigned char>(spec[i])); ++i) {
    width = width * 10 + (spec[i] - '0');
    if (width > 100000) throw Failure("format width too large");
  }
  char grouping = 0;
  if (i < spec.size() && (spec[i] == ',' || spec[i] == '_')) grouping = spec[i++];
  if (i < spec.size() && spec[i] == '.') {
    precision = 0;
    for (++i; i < spec.size() && std::isdigit(static_cast<unsigned char>(spec[i])); ++i) {
      precision = precision * 10 + (spec[i] - '0');
      if (precision > 1000) throw Failure("format precision too large");
    }
  }
  if (i < spec.size()) type = spec[i++];
  if (i != spec.size()) throw Failure("invalid format specifier '" + std::string(spec) + "'");
  std::string body;
  const bool numeric = v.is_number() && type != 's';
  if (!numeric) {
    if (type && type != 's')
      throw Failure(std::string("unknown format code '") + type + "' for object of type '" + type_name(v) + "'");
    body = to_str(v, in.limits().max_output);
    if (precision >= 0) {
      const auto offsets = text::code_point_offsets(body);
      if (static_cast<size_t>(precision) + 1 < offsets.size()) body.resize(offsets[static_cast<size_t>(precision)]);
    }
    if (!align) align = '<';
  } else {
    const bool as_int = v.is_int_like() &&
                        (type == 0 || std::string_view("dbxXoc").find(type) != std::string_view::npos) && precision < 0;
    std::string digits;
    bool negative;
    if (as_int) {
      const int64_t x = v.as_int();
      negative = x < 0;
      const uint64_t mag = negative ? 0 - static_cast<uint64_t>(x) : static_cast<uint64_t>(x);
      const int base = type == 'b' ? 2 : type == 'o' ? 8 : type == 'x' || type == 'X' ? 16 : 10;
      if (type == 'c') {
        text::append_utf8(digits, static_cast<char32_t>(mag));
      } else {
        uint64_t m = mag;
        do {
          digits += "0123456789abcdef"[m % static_cast<uint64_t>(base)];
          m /= static_cast<uint64_t>(base);
        } while (m);
        std::reverse(digits.begin(), digits.end());
        if (type == 'X')
          for (char& c : digits) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        if (alternate && base != 10)
          digits = (type == 'b' ? "0b" : type == 'o' ? "0o" : type == 'X' ? "0X" : "0x") + digits;
      }
    } else {
      if (type && std::string_view("eEfFgG%n").find(type) == std::string_view::npos)
        throw Failure(std::string("unknown format code '") + type + "' for object of type 'float'");
      double x = v.as_float();
      negative = std::signbit(x) && !std::isnan(x);
      x = std::fabs(x);
      if (type == 0 && precision < 0) {
        digits = format_float(x);
      } else {
        const char t = type == 0 ? 'g' : type == '%' ? 'f' : type == 'n' ? 'g' : type;
        if (type == '%') x *= 100;
        const std::string f = std::string("%") + (alternate ? "#" : "") + ".*" + t;
        const int p = precision < 0 ? 6 : precision;
        digits.resize(static_cast<size_t>(std::snprintf(nullptr, 0, f.c_str(), p, x)) + 1);
        std::snprintf(digits.data(), digits.size(), f.c_str(), p, x);
        digits.pop_back();
        if (type == '%') digits += '%';
      }
    }
    if (grouping) {  // separators every three digits of the integer part: 1,234,567.5
      const size_t digits_end = std::min(digits.find_first_not_of("0123456789"), digits.size());
      std::string grouped;
      for (size_t k = 0; k < digits_end; ++k) {
        if (k > 0 && (digits_end - k) % 3 == 0) grouped += grouping;
        grouped += digits[k];
      }
      digits = grouped + digits.substr(digits_end);
    }
    const std::string sign_text = negative ? "-" : sign == '+' ? "+" : sign == ' ' ? " " : "";
    if (zero && !align) fill = '0', align = '=';
    if (!align) align = '>';
    if (align == '=') {
      const int pad = width - static_cast<int>(sign_text.size() + digits.size());
      return sign_text + std::string(static_cast<size_t>(std::max(0, pad)), fill) + digits;
    }
    body = sign_text + digits;
  }
  const int n = static_cast<int>(text::code_point_count(body));
  if (n >= width) return body;
  const auto pad = static_cast<size_t>(width - n);
  std::string fill_text(1, fill);
  auto repeat = [&](size_t k) {
    std::string s;
    for (size_t j = 0; j < k; ++j) s += fill_text;
    return s;
  };
  if (align == '<') return body + repeat(pad);
  if (align == '^') return repeat(pad / 2) + body + repeat(pad - pad / 2);
  return repeat(pad) + body;
}

Value m_format(Interpreter& in, const Value& self, CallArgs& args) {
  const std::string& fmt = self.str();
  std::string out;
  size_t auto_index = 0;
  char numbering = 0;  // 'a'utomatic or 'm'anual, once the first field decides
  for (size_t i = 0; i < fmt.size(); ++i) {
    const char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') ++i;
      else throw Failure("Single '}' encountered in format string");
      out += '}';
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    const size_t close = fmt.find('}', i);
    if (close == std::string::npos) throw Failure("Single '{' encountered in format string");
    std::string_view field(fmt.data() + i + 1, close - i - 1);
    if (field.find('{') != std::string_view::npos) throw Failure("nested fields in format specs are not supported");
    i = close;
    std::string_view spec, conversion;
    if (const size_t colon = field.find(':'); colon != std::string_view::npos)
      spec = field.substr(colon + 1), field = field.substr(0, colon);
    if (const size_t bang = field.find('!'); bang != std::string_view::npos)
      conversion = field.substr(bang + 1), field = field.substr(0, bang);
    size_t name_end = std::min(field.find('.'), field.find('['));
    const std::string_view name = field.substr(0, name_end);
    Value v;
    if (name.empty() ||
        std::all_of(name.begin(), name.end(), [](char ch) { return std::isdigit(static_cast<unsigned char>(ch)); })) {
      // Python refuses to mix {} with {0} in one format string.
      if ((name.empty() && numbering == 'm') || (!name.empty() && numbering == 'a'))
        throw Failure("cannot switch between manual field specification and automatic field numbering");
      numbering = name.empty() ? 'a' : 'm';
      const size_t index = name.empty() ? auto_index++ : static_cast<size_t>(std::atoll(std::string(name).c_str()));
      if (index >= args.positional.size())
        throw Failure("Replacement index " + std::to_string(index) + " out of range for positional args tuple");
      v = args.positional[index];
    } else {
      const auto it =
          std::find_if(args.keywords.begin(), args.keywords.end(), [&](const auto& kw) { return kw.first == name; });
      if (it == args.keywords.end()) throw Failure("KeyError: '" + std::string(name) + "'");
      v = it->second;
    }
    for (std::string_view rest = name_end == std::string_view::npos ? "" : field.substr(name_end); !rest.empty();) {
      if (rest[0] == '.') {
        const size_t end = std::min(rest.find('.', 1), rest.find('[', 1));
        v = get_attribute(v, rest.substr(1, end == std::string_view::npos ? std::string_view::npos : end - 1));
        rest = end == std::string_view::npos ? "" : rest.substr(end);
      } else {
        const size_t end = rest.find(']');
        if (end == std::string_view::npos) throw Failure("Missing ']' in format string");
        const std::string key(rest.substr(1, end - 1));
        const bool numeric = !key.empty() && std::all_of(key.begin(), key.end(), [](char ch) {
          return std::isdigit(static_cast<unsigned char>(ch));
        });
        v = get_item(v, numeric ? Value::integer(std::atoll(key.c_str())) : Value::string(key));
        rest = rest.substr(end + 1);
      }
    }
    if (conversion == "r" || conversion == "a") {
      std::string r;
      append_repr(r, v, in.limits().max_output);
      v = Value::string(std::move(r));
    } else if (conversion == "s") {
      v = Value::string(to_str(v, in.limits().max_output));
    } else if (!conversion.empty()) {
      throw Failure("Unknown conversion specifier " + std::string(conversion));
    }
    out += format_spec(in, v, spec);
    if (out.size() > in.limits().max_output) throw Failure("the formatted string is too large");
  }
  return str_result(in, std::move(out));
}

bool all_code_points(const std::string& s, bool (*pred)(char32_t)) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size();)
    if (!pred(text::next_code_point(s, i))) return false;
  return true;
}
bool is_alnum(char32_t cp) { return cp != '_' && text::is_word(cp); }

Value m_isdigit(Interpreter&, const Value& s, CallArgs& a) {
  return Params("isdigit", a, {}), Value::boolean(all_code_points(s.str(), text::is_decimal));
}
Value m_isalpha(Interpreter&, const Value& s, CallArgs& a) {
  return Params("isalpha", a, {}), Value::boolean(all_code_points(s.str(), text::is_alpha));
}
Value m_isalnum(Interpreter&, const Value& s, CallArgs& a) {
  return Params("isalnum", a, {}), Value::boolean(all_code_points(s.str(), is_alnum));
}
Value m_isspace(Interpreter&, const Value& s, CallArgs& a) {
  return Params("isspace", a, {}), Value::boolean(all_code_points(s.str(), text::is_space));
}

Value case_check(const std::string& s, bool lower) {
  bool cased = false;
  for (size_t i = 0; i < s.size();) {
    const char32_t cp = text::next_code_point(s, i);
    if (!text::is_cased_letter(cp)) continue;
    cased = true;
    if (lower ? text::to_lower(cp) != cp : text::to_upper(cp) != cp) return Value::boolean(false);
  }
  return Value::boolean(cased);
}
Value m_islower(Interpreter&, const Value& s, CallArgs& a) {
  return Params("islower", a, {}), case_check(s.str(), true);
}
Value m_isupper(Interpreter&, const Value& s, CallArgs& a) {
  return Params("isupper", a, {}), case_check(s.str(), false);
}

Value affix_remove(const Value& self, CallArgs& args, bool prefix) {
  Params p(prefix ? "removeprefix" : "removesuffix", args, {"affix"});
  const std::string& affix = string_arg(p, 0, "the argument");
  const std::string& s = self.str();
  if (prefix && s.starts_with(affix)) return Value::string(s.substr(affix.size()));
  if (!prefix && s.ends_with(affix)) return Value::string(s.substr(0, s.size() - affix.size()));
  return self;
}
Value m_removeprefix(Interpreter&, const Value& s, CallArgs& a) { return affix_remove(s, a, true); }
Value m_removesuffix(Interpreter&, const Value& s, CallArgs& a) { return affix_remove(s, a, false); }

Value partition_method(const Value& self, CallArgs& args, bool right) {
  Params p(right ? "rpartition" : "partition", args, {"sep"});
  const std::string& sep = string_arg(p, 0, "sep");
  if (sep.empty()) throw Failure("empty separator");
  const std::string& s = self.str();
  const size_t at = right ? text::rfind(s, sep) : text::find(s, sep, 0);
  if (at == std::string::npos)
    return right ? Value::list({Value::string(""), Value::string(""), self}, true)
                 : Value::list({self, Value::string(""), Value::string("")}, true);
  return Value::list({Value::string(s.substr(0, at)), Value::string(sep), Value::string(s.substr(at + sep.size()))},
                     true);
}
Value m_partition(Interpreter&, const Value& s, CallArgs& a) { return partition_method(s, a, false); }
Value m_rpartition(Interpreter&, const Value& s, CallArgs& a) { return partition_method(s, a, true); }

Value justify(Interpreter& in, const Value& self, CallArgs& args, const char* name, char how) {
  Params p(name, args, {"width", "fillchar"});
  const int64_t width = p.integer(0, 0);
  const std::string fill = p.string(1).value_or(" ");
  if (text::code_point_count(fill) != 1) throw Failure("The fill character must be exactly one character long");
  const std::string& s = self.str();
  const auto n = static_cast<int64_t>(text::code_point_count(s));
  if (width <= n) return self;
  if (static_cast<uint64_t>(width) * fill.size() > in.limits().max_output)
    throw Failure(std::string(name) + "(): width too large");
  const int64_t pad = width - n;
  const int64_t left = how == '<' ? 0 : how == '>' ? pad : pad / 2 + (pad & width & 1);
  std::string out;
  for (int64_t i = 0; i < left; ++i) out += fill;
  out += s;
  for (int64_t i = left; i < pad; ++i) out += fill;
  return str_result(in, std::move(out));
}
Value m_ljust(Interpreter& in, const Value& s, CallArgs& a) { return justify(in, s, a, "ljust", '<'); }
Value m_rjust(Interpreter& in, const Value& s, CallArgs& a) { return justify(in, s, a, "rjust", '>'); }
Value m_center(Interpreter& in, const Value& s, CallArgs& a) { return justify(in, s, a, "center", '^'); }

Value m_zfill(Interpreter& in, const Value& self, CallArgs& args) {
  Params p("zfill", args, {"width"});
  const int64_t width = p.integer(0, 0);
  std::string s = self.str();
  const auto n = static_cast<int64_t>(text::code_point_count(s));
  if (width <= n) return self;
  if (width > static_cast<int64_t>(in.limits().max_output)) throw Failure("zfill(): width too large");
  const size_t at = !s.empty() && (s[0] == '+' || s[0] == '-') ? 1 : 0;
  s.insert(at, std::string(static_cast<size_t>(width - n), '0'));
  return str_result(in, std::move(s));
}

// ---- dict

Value m_items(Interpreter& in, const Value& self, CallArgs& args) {
  Params("items", args, {});
  std::vector<Value> pairs;
  for (const auto& [k, v] : self.dict().items()) pairs.push_back(Value::list({k, v}, true));
  in.spend_steps(static_cast<int64_t>(pairs.size()));
  return Value::view(std::move(pairs), "dict_items");
}
Value m_keys(Interpreter& in, const Value& self, CallArgs& args) {
  Params("keys", args, {});
  std::vector<Value> keys;
  for (const auto& [k, v] : self.dict().items()) keys.push_back(k);
  in.spend_steps(static_cast<int64_t>(keys.size()));
  return Value::view(std::move(keys), "dict_keys");
}
Value m_values(Interpreter& in, const Value& self, CallArgs& args) {
  Params("values", args, {});
  std::vector<Value> values;
  for (const auto& [k, v] : self.dict().items()) values.push_back(v);
  in.spend_steps(static_cast<int64_t>(values.size()));
  return Value::view(std::move(values), "dict_values");
}
Value m_get(Interpreter&, const Value& self, CallArgs& args) {
  Params p("get", args, {"key", "default"});
  if (!p.has(0)) p.type_error("expected at least 1 argument, got 0");
  const Value* v = self.dict().find(*p.get(0));
  return v ? *v : p.get_or(1, Value::none());
}
Value m_copy(Interpreter&, const Value& self, CallArgs& args) {
  Params("copy", args, {});
  return self;  // values are immutable: sharing is copying
}

// ---- list and tuple

Value m_list_count(Interpreter& in, const Value& self, CallArgs& args) {
  Params p("count", args, {"value"});
  if (!p.has(0)) p.type_error("takes exactly one argument (0 given)");
  int64_t n = 0;
  for (const Value& v : self.list().items) n += equal(v, *p.get(0)) ? 1 : 0;
  in.spend_steps(static_cast<int64_t>(self.list().items.size()));
  return Value::integer(n);
}
Value m_list_index(Interpreter& in, const Value& self, CallArgs& args) {
  Params p("index", args, {"value"});
  if (!p.has(0)) p.type_error("takes exactly one argument (0 given)");
  const auto& items = self.list().items;
  in.spend_steps(static_cast<int64_t>(items.size()));
  for (size_t i = 0; i < items.size(); ++i)
    if (equal(items[i], *p.get(0))) return Value::integer(static_cast<int64_t>(i));
  throw Failure(std::string(type_name(self)) + ".index(x): x not in " + type_name(self));
}

constexpr MethodDef kStrMethods[] = {
    {"capitalize", m_capitalize},
    {"casefold", m_casefold},
    {"center", m_center},
    {"count", m_str_count},
    {"endswith", m_endswith},
    {"find", m_find},
    {"format", m_format},
    {"index", m_index},
    {"isalnum", m_isalnum},
    {"isalpha", m_isalpha},
    {"isdigit", m_isdigit},
    {"islower", m_islower},
    {"isspace", m_isspace},
    {"isupper", m_isupper},
    {"join", m_join},
    {"ljust", m_ljust},
    {"lower", m_lower},
    {"lstrip", m_lstrip},
    {"partition", m_partition},
    {"removeprefix", m_removeprefix},
    {"removesuffix", m_removesuffix},
    {"replace", m_replace},
    {"rfind", m_rfind},
    {"rindex", m_rindex},
    {"rjust", m_rjust},
    {"rpartition", m_rpartition},
    {"rsplit", m_rsplit},
    {"rstrip", m_rstrip},
    {"split", m_split},
    {"splitlines", m_splitlines},
    {"startswith", m_startswith},
    {"strip", m_strip},
    {"swapcase", m_swapcase},
    {"title", m_title},
    {"upper", m_upper},
    {"zfill", m_zfill},
};
constexpr MethodDef kDictMethods[] = {
    {"items", m_items}, {"keys", m_keys}, {"values", m_values}, {"get", m_get},          {"copy", m_copy},
    {"clear", nullptr}, {"pop", nullptr}, {"popitem", nullptr}, {"setdefault", nullptr}, {"update", nullptr},
};
constexpr MethodDef kListMethods[] = {
    {"count", m_list_count}, {"index", m_list_index}, {"copy", m_copy},    {"append", nullptr},
    {"clear", nullptr},      {"extend", nullptr},     {"insert", nullptr}, {"pop", nullptr},
    {"remove", nullptr},     {"reverse", nullptr},    {"sort", nullptr},
};
constexpr MethodDef kTupleMethods[] = {{"count", m_list_count}, {"index", m_list_index}};

template <size_t N>
std::optional<Value> bind(const MethodDef (&table)[N], const Value& self, std::string_view name) {
  for (const MethodDef& def : table) {
    if (def.name != name) continue;
    // transformers renders in jinja2's ImmutableSandboxedEnvironment, which refuses these.
    if (!def.fn)
      return Value::undefined("access to attribute '" + std::string(name) + "' of '" + type_name(self) +
                              "' object is unsafe.");
    return Value::callable(std::make_shared<BoundMethod>(self, def));
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Globals

class Builtin : public Callable {
 public:
  using Fn = Value (*)(Interpreter& in, CallArgs& args);
  Builtin(std::string_view name, Fn fn) : name_(name), fn_(fn) {}
  Value call(Interpreter& in, CallArgs& args) const override {
    if (!fn_) throw Failure("the '" + std::string(name_) + "' function is not supported");
    return fn_(in, args);
  }
  std::string repr() const override { return "<built-in function " + std::string(name_) + ">"; }

 private:
  std::string_view name_;
  Fn fn_;
};

// jinja2's sandbox caps range() at this many items.
constexpr int64_t kMaxRange = 100000;

Value g_range(Interpreter& in, CallArgs& args) {
  if (!args.keywords.empty()) throw Failure("range() takes no keyword arguments");
  const auto& a = args.positional;
  if (a.empty() || a.size() > 3) throw Failure("range expected 1 to 3 arguments, got " + std::to_string(a.size()));
  for (const Value& v : a)
    if (!v.is_int_like())
      throw Failure(std::string("'") + type_name(v) + "' object cannot be interpreted as an integer");
  const int64_t start = a.size() == 1 ? 0 : a[0].as_int();
  const int64_t stop = a.size() == 1 ? a[0].as_int() : a[1].as_int();
  const int64_t step = a.size() == 3 ? a[2].as_int() : 1;
  if (step == 0) throw Failure("range() arg 3 must not be zero");
  const long double span = static_cast<long double>(stop) - static_cast<long double>(start);
  const long double count_ld = (span / step) > 0 ? std::ceil(span / step) : 0;
  if (count_ld > kMaxRange)
    throw Failure("Range too big. The sandbox blocks ranges larger than MAX_RANGE (" + std::to_string(kMaxRange) +
                  ").");
  const auto count = static_cast<int64_t>(count_ld);
  in.spend_steps(count);
  std::vector<Value> items;
  items.reserve(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) items.push_back(Value::integer(start + i * step));
  return Value::list(std::move(items));
}

// dict(mapping_or_pairs, **kwargs), as Python's dict() builds it.
Dict build_dict(Interpreter& in, CallArgs& args, const char* name) {
  if (args.positional.size() > 1) throw Failure(std::string(name) + "() expected at most 1 positional argument");
  Dict d;
  if (!args.positional.empty()) {
    const Value& src = args.positional[0];
    if (src.is_dict()) {
      for (const auto& [k, v] : src.dict().items()) d.insert(k, v);
    } else {
      const Value pairs = iteration_list(in, src);
      for (const Value& pair : pairs.list().items) {
        const Value kv = iteration_list(in, pair);
        if (kv.list().items.size() != 2)
          throw Failure("dictionary update sequence element has the wrong length; 2 is required");
        d.insert(kv.list().items[0], kv.list().items[1]);
      }
    }
  }
  for (auto& [k, v] : args.keywords) d.insert(Value::string(k), v);
  in.spend_steps(static_cast<int64_t>(d.size()));
  return d;
}

Value g_dict(Interpreter& in, CallArgs& args) { return Value::dict(build_dict(in, args, "dict")); }

Value g_namespace(Interpreter& in, CallArgs& args) {
  Dict attrs = build_dict(in, args, "namespace");
  auto ns = in.new_namespace();
  for (const auto& [k, v] : attrs.items()) {
    ns->depth = std::max(ns->depth, nesting(v) + 1);
    if (!k.is_string()) throw Failure("namespace() keys must be strings");
  }
  if (ns->depth > kMaxNesting) throw Failure("namespaces nest too deeply");
  ns->attrs = std::move(attrs);
  return Value::nspace(std::move(ns));
}

Value g_raise_exception(Interpreter& in, CallArgs& args) {
  Params p("raise_exception", args, {"message"});
  throw Raised{p.has(0) ? to_str(*p.get(0), in.limits().max_output) : std::string()};
}

// datetime.now().strftime(format): local time; %f (microseconds) is Python's own addition.
Value g_strftime_now(Interpreter& in, CallArgs& args) {
  Params p("strftime_now", args, {"format"});
  const std::string& fmt = string_arg(p, 0, "the format");
  if (fmt.size() > 4096) throw Failure("strftime_now(): format too long");
  timeval tv{};
  gettimeofday(&tv, nullptr);
  std::tm tm{};
  const time_t secs = tv.tv_sec;
  localtime_r(&secs, &tm);
  std::string expanded;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] == '%' && i + 1 < fmt.size() && fmt[i + 1] == 'f') {
      char us[8];
      std::snprintf(us, sizeof us, "%06ld", static_cast<long>(tv.tv_usec));
      expanded += us;
      ++i;
    } else {
      if (fmt[i] == '%' && i + 1 < fmt.size()) expanded += fmt[i++];
      expanded += fmt[i];
    }
  }
  if (expanded.empty()) return Value::string("");
  std::string out(256 + expanded.size() * 16, '\0');
  const size_t n = std::strftime(out.data(), out.size(), expanded.c_str(), &tm);
  out.resize(n);
  return str_result(in, std::move(out));
}

// joiner(sep): a function returning "" the first time and sep afterwards.
class Joiner : public Callable {
 public:
  explicit Joiner(std::string sep) : sep_(std::move(sep)) {}
  Value call(Interpreter&, CallArgs& args) const override {
    Params("joiner", args, {});
    if (!used_) {
      used_ = true;
      return Value::string("");
    }
    return Value::string(sep_);
  }
  std::string repr() const override { return "<jinja2.utils.Joiner object>"; }

 private:
  std::string sep_;
  mutable bool used_ = false;  // a render is single-threaded; the joiner belongs to it
};

Value g_joiner(Interpreter& in, CallArgs& args) {
  Params p("joiner", args, {"sep"});
  return Value::callable(std::make_shared<Joiner>(p.has(0) ? to_str(*p.get(0), in.limits().max_output) : ", "));
}

}  // namespace

std::optional<Value> find_method(const Value& receiver, std::string_view name) {
  switch (receiver.type()) {
    case Value::Type::String: return bind(kStrMethods, receiver, name);
    case Value::Type::Dict: return bind(kDictMethods, receiver, name);
    case Value::Type::List:
      if (!receiver.is_list()) return std::nullopt;
      return receiver.list().tuple ? bind(kTupleMethods, receiver, name) : bind(kListMethods, receiver, name);
    default: return std::nullopt;
  }
}

std::optional<Value> find_global(std::string_view name) {
  static const std::pair<std::string_view, Value> globals[] = {
      {"range", Value::callable(std::make_shared<Builtin>("range", g_range))},
      {"dict", Value::callable(std::make_shared<Builtin>("dict", g_dict))},
      {"namespace", Value::callable(std::make_shared<Builtin>("namespace", g_namespace))},
      {"raise_exception", Value::callable(std::make_shared<Builtin>("raise_exception", g_raise_exception))},
      {"strftime_now", Value::callable(std::make_shared<Builtin>("strftime_now", g_strftime_now))},
      {"joiner", Value::callable(std::make_shared<Builtin>("joiner", g_joiner))},
      {"cycler", Value::callable(std::make_shared<Builtin>("cycler", nullptr))},
      {"lipsum", Value::callable(std::make_shared<Builtin>("lipsum", nullptr))},
  };
  for (const auto& [n, v] : globals)
    if (n == name) return v;
  return std::nullopt;
}

}  // namespace anvil::chat::jinja
