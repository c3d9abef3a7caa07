// jinja2's filters and tests, with transformers' tojson.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "chat/jinja_builtins.h"
#include "chat/jinja_eval.h"
#include "chat/jinja_json.h"
#include "chat/jinja_ops.h"
#include "chat/jinja_text.h"

namespace anvil::chat::jinja {

namespace {

// str() of anything, as jinja2's filters coerce their input (undefined is "").
std::string soft_str(Interpreter& in, const Value& v) { return to_str(v, in.limits().max_output); }

Value str_value(Interpreter& in, std::string s) {
  in.spend_bytes(s.size());
  return Value::string(std::move(s));
}

// The result of a string filter on `src`: Markup stays Markup, as markupsafe's methods keep it.
Value like(Interpreter& in, const Value& src, std::string s) {
  in.spend_bytes(s.size());
  return src.is_markup() ? Value::markup(std::move(s)) : Value::string(std::move(s));
}

void check_defined(const Value& v) {
  if (v.is_undefined()) throw Failure(v.undefined_hint());
}

const std::vector<Value>& items_of(Interpreter& in, const Value& v, Value& holder) {
  holder = iteration_list(in, v);
  return holder.list().items;
}

// jinja2's make_attrgetter: "a.b.0" looks up a, then b, then item 0, each item-first.
Value attribute_path(const Value& v, const std::string& path) {
  Value cur = v;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool numeric =
        !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    cur = get_item(cur, numeric ? Value::integer(std::atoll(part.c_str())) : Value::string(part));
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

std::optional<std::string> attribute_param(const Params& p, size_t i) {
  const Value* v = p.get(i);
  if (!v || v->is_none()) return std::nullopt;
  if (v->is_int_like()) return std::to_string(v->as_int());
  if (!v->is_string()) p.type_error("attribute must be a string");
  return v->str();
}

// The sort/min/max/unique key: the attribute if asked, lowercased strings unless case-sensitive.
Value sort_key(const Value& v, const std::optional<std::string>& attribute, bool case_sensitive) {
  Value k = attribute ? attribute_path(v, *attribute) : v;
  if (!case_sensitive && k.is_string()) return Value::string(text::lower(k.str()));
  return k;
}

// ---------------------------------------------------------------------------------------------
// Filters

Value f_abs(Interpreter&, const Value& v, CallArgs& args) {
  Params("abs", args, {});
  check_defined(v);
  if (v.is_int_like()) {
    if (v.as_int() == INT64_MIN) throw Failure("integer overflow");
    return Value::integer(std::llabs(v.as_int()));
  }
  if (v.is(Value::Type::Float)) return Value::number(std::fabs(v.as_float()));
  throw Failure(std::string("bad operand type for abs(): '") + type_name(v) + "'");
}

Value f_attr(Interpreter&, const Value& v, CallArgs& args) {
  Params p("attr", args, {"name"});
  if (!p.has(0) || !p.get(0)->is_string()) p.type_error("the attribute name must be a string");
  return get_attribute(v, p.get(0)->str());
}

Value f_batch(Interpreter& in, const Value& v, CallArgs& args) {
  Params p("batch", args, {"linecount", "fill_with"});
  const int64_t n = p.integer(0, 0);
  if (n <= 0) throw Failure("batch(): linecount must be positive");
  Value holder;
  const auto& items = items_of(in, v, holder);
  std::vector<Value> out, row;
  for (const Value& item : items) {
    row.push_back(item);
    if (static_cast<int64_t>(row.size()) == n) out.push_back(Value::list(std::exchange(row, {})));
  }
  if (!row.empty()) {
    if (p.has(1) && !p.get(1)->is_none()) {
      in.spend_steps(n - static_cast<int64_t>(row.size()));  // before a huge `linecount` is filled
      while (static_cast<int64_t>(row.size()) < n) row.push_back(*p.get(1));
    }
    out.push_back(Value::list(std::move(row)));
  }
  in.spend_steps(static_cast<int64_t>(items.size()));
  return Value::iterator(std::move(out));
}

Value f_capitalize(Interpreter& in, const Value& v, CallArgs& args) {
  Params("capitalize", args, {});
  return like(in, v, text::capitalize(soft_str(in, v)));
}

Value f_center(Interpreter& in, const Value& v, CallArgs& args) {
  Params p("center", args, {"width"});
  const std::string s = soft_str(in, v);
  const int64_t width = p.integer(0, 80);
  const auto len = static_cast<int64_t>(text::code_point_count(s));
  if (width <= len) return like(in, v, s);
  if (width > static_cast<int64_t>(in.limits().max_output)) throw Failure("center(): width too large");
  // Python puts the odd space on the right unless width is odd.
  const int64_t pad = width - len;
  const int64_t left = pad / 2 + (pad & width & 1);
  return like(in, v,
              std::string(static_cast<size_t>(left), ' ') + s + std::string(static_cast<size_t>(pad - left), ' '));
}

Value f_length(Interpreter&, const Value& v, CallArgs& args) {
  Params("length", args, {});
  switch (v.type()) {
    case Value::Type::Undefined: return Value::integer(0);
    case Value::Type::String: return Value::integer(static_cast<int64_t>(text::code_point_count(v.str())));
    case Value::Type::List:
      if (v.list().kind == ListKind::Iterator)
        throw Failure(std::string("object of type '") + type_name(v) + "' has no len()");
      return Value::integer(static_cast<int64_t>(v.list().items.size()));
    case Value::Type::Dict: return Value::integer(static_cast<int64_t>(v.dict().size()));
    case Value::Type::Loop: return Value::integer(static_cast<int64_t>(v.loop_state().items.list().items.size()));
    default: throw Failure(std::string("object of type '") + type_name(v) + "' has no len()");
  }
}

Value f_default(Interpreter&, const Value& v, CallArgs& args) {
  Params p("default", args, {"default_value", "boolean"});
  if (v.is_undefined() || (p.boolean(1, false) && !truthy(v))) return p.has(0) ? *p.get(0) : Value::string("");
  return v;
}

Value f_dictsort(Interpreter& in, const Value& v, CallArgs& args) {
  Params p("dictsort", args, {"case_sensitive", "by", "reverse"});
  if (!v.is_dict()) throw Failure(std::string("dictsort() needs a mapping, not ") + type_name(v));
  const bool case_sensitive = p.boolean(0, false);
  const std::string by = p.string(1).value_or("key");
  if (by != "key" && by != "value") throw Failure("You can only sort by either \"key\" or \"value\"");
  const bool reverse = p.boolean(2, false);
  std::vector<std::pair<Value, Value>> keyed;  // sort key, (key, value)
  for (const auto& [key, value] : v.dict().items())
    keyed.emplace_back(sort_key(by == "key" ? key : value, std::nullopt, case_sensitive),
                       Value::list({key, value}, true));
  in.spend_steps(static_cast<int64_t>(keyed.size()) * 4);
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    return reverse ? compare(b.first, a.first, "<") < 0 : compare(a.first, b.first, "<") < 0;
  });
  std::vector<Value> pairs;
  for (auto& [k, pair] : keyed) pairs.push_back(std::move(pair));
  return Value::list(std::move(pairs));
}

Value f_escape(Interpreter& in, const Value& v, CallArgs& args) {
  Params("escape", args, {});
  if (v.is_markup()) return v;  // already safe: not escaped twice
  return Value::markup(text::html_escape(soft_str(in, v)));
}

Value f_forceescape(Interpreter& in, const Value& v, CallArgs& args) {
  Params("forceescape", args, {});
  return Value::markup(text::html_escape(soft_str(in, v)));
}

Value f_first(Interpreter& in, const Value& v, CallArgs& args) {
  Params("first", args, {});
  if (v.is_undefined()) return Value::undefined("No first item, sequence was empty.");
  if (v.is(Value::Type::List) && v.list().kind == ListKind::Iterator) {  // takes just the one item
    const List& l = v.list();
    if (l.consumed >= l.items.size()) return Value::undefined("No first item, sequence was empty.");
    return l.items[l.consumed++];
  }
  Value holder;
  const auto& items = items_of(in, v, holder);
  return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
}

Value f_last(Interpreter& in, const Value& v, CallArgs& args) {
  Params("last", args, {});
  if (v.is_undefined()) return Value::undefined("No last item, sequence was empty.");
  if (v.is(Value::Type::List) && v.list().kind == ListKind::Iterator)
    throw Failure(std::string("'") + type_name(v) + "' object is not reversible");
  Value holder;
  const auto& items = items_of(in, v, holder);
  return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
}

// Python's float(str): surrounding whitespace, underscores between digits, inf and nan.
std::optional<double> parse_float(std::string_view s) {
  s = text::strip(s, text::Side::Both);
  std::string clean;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_') {
      if (i == 0 || i + 1 == s.size() || !std::isdigit(static_cast<unsigned char>(s[i - 1])) ||
          !std::isdigit(static_cast<unsigned char>(s[i + 1])))
        return std::nullopt;
      continue;
    }
    clean += s[i];
  }
  if (clean.empty()) return std::nullopt;
  std::string lower = text::lower(clean);
  const std::string body = lower[0] == '+' || lower[0] == '-' ? lower.substr(1) : lower;
  if (body == "inf" || body == "infinity" || body == "nan") {
    const double x = body == "nan" ? NAN : INFINITY;
    return lower[0] == '-' ? -x : x;
  }
  if (body.empty() || !(std::isdigit(static_cast<unsigned char>(body[0])) || body[0] == '.')) return std::nullopt;
  if (body.find_first_not_of("0123456789.e+-") != std::string::npos) return std::nullopt;
  char* end = nullptr;
  const double d = std::strtod(clean.c_str(), &end);
  if (*end != 0) return std::nullopt;
  return d;
}

// Python's int(str, base).
std::optional<int64_t> parse_int(std::string_view s, int base) {
  s = text::strip(s, text::Side::Both);
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.size() > 2 && s[0] == '0') {
    const char p = static_cast<char>(std::tolower(static_cast<unsigned char>(s[1])));
    if ((p == 'x' && base == 16) || (p == 'o' && base == 8) || (p == 'b' && base == 2)) s.remove_prefix(2);
  }
  if (s.empty()) return std::nullopt;
  int64_t v = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(s[i])));
    if (c == '_' && i > 0 && i + 1 < s.size() && s[i - 1] != '_') continue;
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'z' ? c - 'a' + 10 : 99;
    if (d >= base) return std::nullopt;
    if (__builtin_mul_overflow(v, base, &v) || __builtin_add_overflow(v, d, &v)) throw Failure("integer overflow");
  }
  return negative ? -v : v;
}

Value f_float(Interpreter&, const Value& v, CallArgs& args) {
  Params p("float", args, {"default"});
  check_defined(v);
  if (v.is_number()) return Value::number(v.as_float());
  if (v.is_string())
    if (auto d = parse_float(v.str())) return Value::number(*d);
  return p.has(0) ? *p.get(0) : Value::number(0.0);
}

Value f_int(Interpreter&, const Value& v, CallArgs& args) {
  Params p("int", args, {"default", "base"});
  check_defined(v);
  const Value fallback = p.has(0) ? *p.get(0) : Value::integer(0);
  if (v.is_int_like()) return Value::integer(v.as_int());
  if (v.is(Value::Type::Float)) {
    const double d = std::trunc(v.as_float());
    if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return fallback;
    return Value::integer(static_cast<int64_t>(d));
  }
  if (v.is_string()) {
    if (auto i = parse_int(v.str(), static_cast<int>(p.integer(1, 10)))) return Value::integer(*i);
    if (auto d = parse_float(v.str()); d && std::isfinite(*d) && std::fabs(*d) < 9.2e18)
      return Value::integer(static_cast<int64_t>(std::trunc(*d)));
  }
  return fallback;
}

Value f_format(Interpreter& in, const Value& v, CallArgs& args) {
  if (!args.positional.empty() && !args.keywords.empty())
    throw Failure("can't handle positional and keyword arguments at the same time");
  if (!args.keywords.empty()) {
    Dict d;
    for (auto& [k, value] : args.keywords) d.insert(Value::string(k), value);
    return like(in, v, percent_format(in, soft_str(in, v), Value::dict(std::move(d)), v.is_markup()));
  }
  return like(in, v, percent_format(in, soft_str(in, v), Value::list(args.positional, true), v.is_markup()));
}

Value f_indent(Interpreter& in, const Value& v, CallArgs& args) {
  Params p("indent", args, {"width", "first", "blank"});
  std::string indent =
      p.has(0) && p.get(0)->is_string()
          ? p.get(0)->str()
          : std::string(static_cast<size_t>(std::max<int64_t>(0, std::min<int64_t>(p.integer(0, 4), 1 << 16))), ' ');
  const bool first = p.boolean(1, false), blank = p.boolean(2, false);
  // jinja2 appends a newline before splitting, so a trailing newline is kept and not indented.
  const auto lines = text::splitlines(soft_str(in, v) + "\n");
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) {
      out += '\n';
      if (blank || !lines[i].empty()) out += indent;
    }
    out += lines[i];
    if (out.size() > in.limits().max_output) throw Failure("the indented string is too large");
  }
  if (first) out = indent + out;
  return like(in, v, std::move(out));
}

Value f_items(Interpreter& in, const Value& v, CallArgs& args) {
  Params("items", args, {});
  if (v.is_undefined()) return Value::iterator({});
  if (!v.is_dict()) throw Failure("Can only get item pairs from a mapping.");
  std::vector<Value> pairs;
  for (const auto& [key, value] : v.dict().items()) pairs.push_back(Value::list({key, value}, true));
  in.spend_steps(static_cast<int64_t>(pairs.size()));
  return Value::iterator(std::move(pairs));
}

Value f_join(Interpreter& in, const Value& v, CallArgs& args) {
  Params p("join", args, {"d", "attribute"});
  const std::string sep = p.has(0) ? soft_str(in, *p.get(0)) : "";
  const auto attribute = attribute_param(p, 1);
  Value holder;
  const auto& items = items_of(in, v, holder);
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    append_str(out, attribute ? attribute_path(items[i], *attribute) : items[i], in.limits().max_output);
    if (out.size() > in.limits().max_output) throw Failure("the joined string is too large");
  }
  in.spend_steps(static_cast<int64_t>(items.size()));
  return str_value(in, std::move(out));
}

Value f_list(Interpreter& in, const Value& v, CallArgs& args) {
  Params("list", args, {});
  Value holder;
  const auto& items = items_of(in, v, holder);
  in.spend_steps(static_cast<int64_t>(items.size()));
  return Value::list(items);
}

Value f_lower(Interpreter& in, const Value& v, CallArgs& args) {
  Params("lower", args, {});
  return like(in, v, text::lower(soft_str(in, v)));
}

Value f_upper(Interpreter& in, const Value& v, CallArgs& args) {
  Params("upper", args, {});
  return like(in, v, text::upper(soft_str(in, v)));
}

Value f_title(Interpreter& in, const Value& v, CallArgs& args) {
  Params("title", args, {});
  return like(in, v, text::jinja_title(soft_str(in, v)));
}

Value f_trim(Interpreter& in, const Value& v, CallArgs& args) {
  Params p("trim", args, {"chars"});
  const std::string s = soft_str(in, v);
  const auto chars = p.string(0);
  return like(in, v, std::string(chars ? text::strip(s, text::Side::Both, *chars) : text::strip(s, text::Side::Both)));
}

Value f_map(Interpreter& in, const Value& v, CallArgs& args) {
  if (!truthy(v)) return Value::iterator({});  // jinja2 maps nothing over None, '', 0, ...
  Value holder;
  const auto& items = items_of(in, v, holder);
  std::vector<Value> out;
  out.reserve(items.size());
  in.spend_steps(static_cast<int64_t>(items.size()));
  if (args.positional.empty()) {
    Params p("map", args, {"attribute", "default"});
    const auto attribute = attribute_param(p, 0);
    if (!attribute) throw Failure("map() requires a filter name or attribute=");
    for (const Value& item : items) {
      Value r = attribute_path(item, *attribute);
      out.push_back(r.is_undefined() && p.has(1) ? *p.get(1) : r);
    }
    return Value::iterator(std::move(out));
  }
  if (!args.positional[0].is_string()) throw Failure("map(): the filter name must be a string");
  const std::string name = args.positional[0].str();
  CallArgs rest{{args.positional.begin() + 1, args.positional.end()}, args.keywords};
  for (const Value& item : items) {
    CallArgs a = rest;
    out.push_back(in.filter(name, item, a));
  }
  return Value::iterator(std::move(out));
}

// select/reject/selectattr/rejectattr: a test by name (default: truthiness) on each item or attribute.
Value select_items(Interpreter& in, const Value& v, CallArgs& args, bool by_attribute, bool keep) {
  const char* fn = by_attribute ? (keep ? "selectattr" : "rejectattr") : (keep ? "select" : "reject");
  size_t next = 0;
  std::optional<std::string> attribute;
  if (by_attribute) {
    if (args.positional.empty() || !args.positional[0].is_string())
      throw Failure(std::string(fn) + "() requires an attribute name");
    attribute = args.positional[next++].str();
  }
  std::optional<std::string> test;
  if (next < args.positional.size()) {
    if (!args.positional[next].is_string()) throw Failure(std::string(fn) + "(): the test name must be a string");
    test = args.positional[next++].str();
  }
  CallArgs rest{{args.positional.begin() + static_cast<std::ptrdiff_t>(next), args.positional.end()}, args.keywords};
  if (!truthy(v)) return Value::iterator({});  // jinja2 filters nothing out of None, '', 0, ...
  Value holder;
  const auto& items = items_of(in, v, holder);
  in.spend_steps(static_cast<int64_t>(items.size()));
  std::vector<Value> out;
  for (const Value& item : items) {
    const Value subject = attribute ? attribute_path(item, *attribute) : item;
    bool pass;
    if (test) {
      CallArgs a = rest;
      pass = in.test(*test, subject, a);
    } else {
      pass = truthy(subject);
    }
    if (pass == keep) out.push_back(item);
  }
  return Value::iterator(std::move(out));
}

Value f_select(Interpreter& in, const Value& v, CallArgs& args) { return select_items(in, v, args, false, true); }
Value f_reject(Interpreter& in, const Value& v, CallArgs& args) { return select_items(in, v, args, false, false); }
Value f_selectattr(Interpreter& in, const Value& v, CallArgs& args) { return select_items(in, v, args, true, true); }
Value f_rejectattr(Interpreter& in, const Value& v, CallArgs& args) { return select_items(in, v, args, true, false); }

Value min_max(Interpreter& in, const Value& v, CallArgs& args, bool want_max) {
  Params p(want_max ? "max" : "min", args, {"case_sensitive", "attribute"});
  const bool case_sensitive = p.boolean(0, false);
  const auto attribute = attribute_param(p, 1);
  Value holder;
  const auto& items = items_of(in, v, holder);
  in.spend_steps(static_cast<int64_t>(items.size()));
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  Value best_key = sort_key(items[0], attribute, case_sensitive);
  for (size_t i = 1; i < items.size(); ++i) {
    Value k = sort_key(items[i], attribute, case_sensitive);
    const int c = compare(k, best_key, want_max ? ">" : "<");
    if (want_max ? c > 0 : c < 0) best = i, best_key = std::move(k);
  }
  return items[best];
}

Value f_max(Interpreter& in, const Value& v, CallArgs& args) { return min_max(in, v, args, true); }
Value f_min(Interpreter& in, const Value& v, CallArgs& args) { return min_max(in, v, args, false); }

Value f_replace(Interpreter& in, const Value& v, CallArgs& args) {
  Params p("replace", args, {"old", "new", "count"});
  if (!p.has(0) || !p.has(1)) throw Failure("replace() needs the old and the new string");
  const std::string s = soft_str(in, v), old = soft_str(in, *p.get(0)), repl = soft_str(in, *p.get(1));
  auto out = text::replace(s, old, repl, static_cast<long>(p.integer(2, -1)), in.limits().max_output);
  if (!out) throw Failure("the replaced string is larger than " + std::to_string(in.limits().max_output) + " bytes");
  return str_value(in, std::move(*out));
}

Value f_reverse(Interpreter& in, const Value& v, CallArgs& args) {
  Params("reverse", args, {});
  if (v.is_string()) {
    const auto offsets = text::code_point_offsets(v.str());
    std::string out;
    out.reserve(v.str().size());
    for (size_t k = offsets.size() - 1; k > 0; --k) out.append(v.str(), offsets[k - 1], offsets[k] - offsets[k - 1]);
    return like(in, v, std::move(out));
  }
  // reversed() where Python has it (an iterator again), else list(value) reversed.
  const bool iterator = v.is(Value::Type::List) && v.list().kind == ListKind::Iterator;
  const char* label = v.is_list()   ? (v.list().tuple ? "reversed" : "list_reverseiterator")
                      : v.is_dict() ? "dict_reversekeyiterator"
                                    : "reversed";
  Value holder;
  const auto& items = items_of(in, v, holder);
  in.spend_steps(static_cast<int64_t>(items.size()));
  std::vector<Value> out(items.rbegin(), items.rend());
  return iterator ? Value::list(std::move(out)) : Value::iterator(std::move(out), label);
}

Value f_round(Interpreter&, const Value& v, CallArgs& args) {
  Params p("round", args, {"precision", "method"});
  check_defined(v);
  const int64_t precision = p.integer(0, 0);
  const std::string method = p.string(1).value_or("common");
  if (method != "common" && method != "ceil" && method != "floor")
    throw Failure("method must be 'common', 'ceil' or 'floor'");
  if (!v.is_number()) throw Failure(std::string("type ") + type_name(v) + " doesn't define __round__ method");
  if (precision < -400 || precision > 400) throw Failure("round(): precision out of range");
  if (method != "common") {
    const double scale = std::pow(10.0, static_cast<double>(precision));
    const double x = v.as_float() * scale;
    return Value::number((method == "ceil" ? std::ceil(x) : std::floor(x)) / scale);
  }
  if (v.is_int_like()) {  // round(int, n) stays an int; negative n rounds to tens, hundreds, ...
    if (precision >= 0) return Value::integer(v.as_int());
    if (precision < -18) return Value::integer(0);
    int64_t scale = 1;
    for (int64_t i = 0; i < -precision; ++i) scale *= 10;
    const int64_t x = v.as_int(), q = x / scale, r = x % scale;
    int64_t rounded = q;
    const int64_t twice = 2 * (r < 0 ? -r : r);
    if (twice > scale || (twice == scale && (q % 2 != 0))) rounded += x < 0 ? -1 : 1;
    return Value::integer(rounded * scale);
  }
  const double x = v.as_float();
  if (!std::isfinite(x)) return Value::number(x);
  if (precision >= 0) {
    // printf rounds the exact binary value half-to-even, as CPython's round() does.
    char buf[512];
    std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(std::min<int64_t>(precision, 300)), x);
    return Value::number(std::strtod(buf, nullptr));
  }
  const double scale = std::pow(10.0, static_cast<double>(-precision));
  return Value::number(std::nearbyint(x / scale) * scale);
}

Value f_safe(Interpreter& in, const Value& v, CallArgs& args) {
  Params("safe", args, {});
  return v.is_markup() ? v : Value::markup(soft_str(in, v));
}

Value f_sort(Interpreter& in, const Value& v, CallArgs& args) {
  Params p("sort", args, {"reverse", "case_sensitive", "attribute"});
  const bool reverse = p.boolean(0, false), case_sensitive = p.boolean(1, false);
  const auto attribute = attribute_param(p, 2);
  Value holder;
  std::vector<std::pair<Value, Value>> keyed;  // key, item
  for (const Value& item : items_of(in, v, holder)) keyed.emplace_back(sort_key(item, attribute, case_sensitive), item);
  in.spend_steps(static_cast<int64_t>(keyed.size()) * 4);
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    return reverse ? compare(b.first, a.first, "<") < 0 : compare(a.first, b.first, "<") < 0;
  });
  std::vector<Value> out;
  out.reserve(keyed.size());
  for (auto& [key, item] : keyed) out.push_back(std::move(item));
  return Value::list(std::move(out));
}

Value f_string(Interpreter& in, const Value& v, CallArgs& args) {
  Params("string", args, {});
  return v.is_string() ? v : str_value(in, soft_str(in, v));  // Markup stays Markup
}

Value f_sum(Interpreter& in, const Value& v, CallArgs& args) {
  Params p("sum", args, {"attribute", "start"});
  const auto attribute = attribute_param(p, 0);
  Value total = p.has(1) ? *p.get(1) : Value::integer(0);
  if (total.is_string()) throw Failure("sum() can't sum strings [use ''.join(seq) instead]");
  Value holder;
  for (const Value& item : items_of(in, v, holder)) {
    in.spend_steps(1);
    total = binary_op(in, BinaryOp::Add, total, attribute ? attribute_path(item, *attribute) : item);
  }
  return total;
}

// transformers' tojson: json.dumps(x, ensure_ascii=False, indent=indent, separators=separators,
// sort_keys=sort_keys), with Python's default separators for the indent given.
Value f_tojson(Interpreter& in, const Value& v, CallArgs& args) {
  Params p("tojson", args, {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonStyle style;
  style.ensure_ascii = p.boolean(0, false);
  if (const Value* indent = p.get(1); indent && !indent->is_none()) {
    if (indent->is_string()) style.indent = indent->str();
    else if (indent->is_int_like())
      style.indent = std::string(static_cast<size_t>(std::clamp<int64_t>(indent->as_int(), 0, 1 << 16)), ' ');
    else p.type_error("indent must be an integer or a string");
    style.item_separator = ",";
  }
  if (const Value* sep = p.get(2); sep && !sep->is_none()) {
    if (!sep->is_list() || sep->list().items.size() != 2 || !sep->list().items[0].is_string() ||
        !sep->list().items[1].is_string())
      p.type_error("separators must be a pair of strings");
    style.item_separator = sep->list().items[0].str();
    style.key_separator = sep->list().items[1].str();
  }
  style.sort_keys = p.boolean(3, false);
  std::string out;
  append_json(out, v, style, in.limits().max_output);
  return str_value(in, std::move(out));
}

// do_truncate: longer than length + leeway, cut to length (with `end`), at a word unless killwords.
Value f_truncate(Interpreter& in, const Value& v, CallArgs& args) {
  Params p("truncate", args, {"length", "killwords", "end", "leeway"});
  const std::string s = soft_str(in, v);
  const int64_t length = p.integer(0, 255), leeway = p.integer(3, 5);
  const std::string end = p.string(2).value_or("...");
  const auto offsets = text::code_point_offsets(s);
  const auto n = static_cast<int64_t>(offsets.size()) - 1;
  const auto end_len = static_cast<int64_t>(text::code_point_count(end));
  if (length < end_len)
    throw Failure("expected length >= " + std::to_string(end_len) + ", got " + std::to_string(length));
  if (leeway < 0) throw Failure("expected leeway >= 0, got " + std::to_string(leeway));
  if (n <= length + leeway) return v.is_string() ? v : Value::string(s);
  std::string head = s.substr(0, offsets[static_cast<size_t>(length - end_len)]);
  if (!p.boolean(1, false)) {
    const size_t space = head.rfind(' ');
    if (space != std::string::npos) head.resize(space);
  }
  return str_value(in, head + end);
}

Value f_unique(Interpreter& in, const Value& v, CallArgs& args) {
  Params p("unique", args, {"case_sensitive", "attribute"});
  const bool case_sensitive = p.boolean(0, false);
  const auto attribute = attribute_param(p, 1);
  Value holder;
  Dict seen;  // keyed as Python's set is, so lookups stay cheap for strings
  std::vector<Value> out;
  for (const Value& item : items_of(in, v, holder)) {
    Value key = sort_key(item, attribute, case_sensitive);
    if (key.is_list() || key.is_dict()) throw Failure(std::string("unhashable type: '") + type_name(key) + "'");
    in.spend_steps(key.is_string() ? 1 : static_cast<int64_t>(seen.size()) + 1);
    if (seen.find(key)) continue;
    seen.insert(std::move(key), Value::none());
    out.push_back(item);
  }
  return Value::iterator(std::move(out));
}

Value f_wordcount(Interpreter& in, const Value& v, CallArgs& args) {
  Params("wordcount", args, {});
  const std::string s = soft_str(in, v);
  int64_t n = 0;
  bool in_word = false;
  for (size_t i = 0; i < s.size();) {
    const bool w = text::is_word(text::next_code_point(s, i));
    if (w && !in_word) ++n;
    in_word = w;
  }
  return Value::integer(n);
}

// ---------------------------------------------------------------------------------------------
// Tests

bool number_mod_zero(const Value& v, const Value& d) {
  if (!v.is_number() || !d.is_number())
    throw Failure(std::string("unsupported operand type(s) for %: '") + type_name(v) + "' and '" + type_name(d) + "'");
  if (v.is_int_like() && d.is_int_like()) {
    if (d.as_int() == 0) throw Failure("integer division or modulo by zero");
    return d.as_int() == -1 || v.as_int() % d.as_int() == 0;
  }
  if (d.as_float() == 0) throw Failure("float modulo");
  return std::fmod(v.as_float(), d.as_float()) == 0;
}

const Value& one_arg(const char* test, CallArgs& args) {
  if (args.positional.size() != 1 || !args.keywords.empty())
    throw Failure(std::string("the '") + test + "' test takes one argument");
  return args.positional[0];
}

void no_args(const char* test, CallArgs& args) {
  if (!args.positional.empty() || !args.keywords.empty())
    throw Failure(std::string("the '") + test + "' test takes no arguments");
}

bool t_boolean(Interpreter&, const Value& v, CallArgs& a) { return no_args("boolean", a), v.is(Value::Type::Bool); }
bool t_callable(Interpreter&, const Value& v, CallArgs& a) {
  return no_args("callable", a), v.is(Value::Type::Callable);
}
bool t_defined(Interpreter&, const Value& v, CallArgs& a) { return no_args("defined", a), !v.is_undefined(); }
bool t_undefined(Interpreter&, const Value& v, CallArgs& a) { return no_args("undefined", a), v.is_undefined(); }
bool t_none(Interpreter&, const Value& v, CallArgs& a) { return no_args("none", a), v.is_none(); }
bool t_true(Interpreter&, const Value& v, CallArgs& a) {
  return no_args("true", a), v.is(Value::Type::Bool) && v.as_bool();
}
bool t_false(Interpreter&, const Value& v, CallArgs& a) {
  return no_args("false", a), v.is(Value::Type::Bool) && !v.as_bool();
}
bool t_string(Interpreter&, const Value& v, CallArgs& a) { return no_args("string", a), v.is_string(); }
bool t_mapping(Interpreter&, const Value& v, CallArgs& a) { return no_args("mapping", a), v.is_dict(); }
bool t_number(Interpreter&, const Value& v, CallArgs& a) { return no_args("number", a), v.is_number(); }
bool t_integer(Interpreter&, const Value& v, CallArgs& a) { return no_args("integer", a), v.is(Value::Type::Int); }
bool t_float(Interpreter&, const Value& v, CallArgs& a) { return no_args("float", a), v.is(Value::Type::Float); }
bool t_escaped(Interpreter&, const Value& v, CallArgs& a) { return no_args("escaped", a), v.is_markup(); }
bool t_iterable(Interpreter&, const Value& v, CallArgs& a) {
  no_args("iterable", a);
  return v.is_undefined() || v.is_string() || v.is(Value::Type::List) || v.is_dict() || v.is(Value::Type::Loop);
}
bool t_sequence(Interpreter&, const Value& v, CallArgs& a) {
  no_args("sequence", a);  // jinja2 asks for len() and __getitem__: dicts pass, and so does undefined
  return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
}
bool t_even(Interpreter&, const Value& v, CallArgs& a) {
  return no_args("even", a), number_mod_zero(v, Value::integer(2));
}
bool t_odd(Interpreter&, const Value& v, CallArgs& a) {
  return no_args("odd", a), !number_mod_zero(v, Value::integer(2));
}
bool t_divisibleby(Interpreter&, const Value& v, CallArgs& a) { return number_mod_zero(v, one_arg("divisibleby", a)); }
bool t_eq(Interpreter&, const Value& v, CallArgs& a) { return equal(v, one_arg("eq", a)); }
bool t_ne(Interpreter&, const Value& v, CallArgs& a) { return !equal(v, one_arg("ne", a)); }
bool t_lt(Interpreter&, const Value& v, CallArgs& a) { return compare(v, one_arg("lt", a), "<") < 0; }
bool t_le(Interpreter&, const Value& v, CallArgs& a) { return compare(v, one_arg("le", a), "<=") <= 0; }
bool t_gt(Interpreter&, const Value& v, CallArgs& a) { return compare(v, one_arg("gt", a), ">") > 0; }
bool t_ge(Interpreter&, const Value& v, CallArgs& a) { return compare(v, one_arg("ge", a), ">=") >= 0; }
bool t_in(Interpreter& in, const Value& v, CallArgs& a) { return contains(in, one_arg("in", a), v); }
bool t_sameas(Interpreter&, const Value& v, CallArgs& a) {
  const Value& o = one_arg("sameas", a);
  if (v.type() != o.type()) return false;
  switch (v.type()) {
    case Value::Type::None:
    case Value::Type::Undefined: return true;
    case Value::Type::Bool:
    case Value::Type::Int:
    case Value::Type::Float: return equal(v, o);
    default: return v.identity() == o.identity();
  }
}
bool case_test(Interpreter& in, const Value& v, bool want_lower) {
  const std::string s = soft_str(in, v);
  bool cased = false;
  for (size_t i = 0; i < s.size();) {
    const char32_t cp = text::next_code_point(s, i);
    if (!text::is_cased_letter(cp)) continue;
    cased = true;
    if (want_lower ? text::to_lower(cp) != cp : text::to_upper(cp) != cp) return false;
  }
  return cased;
}
bool t_lower(Interpreter& in, const Value& v, CallArgs& a) { return no_args("lower", a), case_test(in, v, true); }
bool t_upper(Interpreter& in, const Value& v, CallArgs& a) { return no_args("upper", a), case_test(in, v, false); }
bool t_filter(Interpreter&, const Value& v, CallArgs& a) {
  no_args("filter", a);
  const FilterDef* f = v.is_string() ? find_filter(v.str()) : nullptr;
  return f && f->fn;
}
bool t_test(Interpreter&, const Value& v, CallArgs& a) {
  no_args("test", a);
  const TestDef* t = v.is_string() ? find_test(v.str()) : nullptr;
  return t && t->fn;
}

constexpr FilterDef kFilters[] = {
    {"abs", f_abs},
    {"attr", f_attr},
    {"batch", f_batch},
    {"capitalize", f_capitalize},
    {"center", f_center},
    {"count", f_length},
    {"d", f_default},
    {"default", f_default},
    {"dictsort", f_dictsort},
    {"e", f_escape},
    {"escape", f_escape},
    {"filesizeformat", nullptr},
    {"first", f_first},
    {"float", f_float},
    {"forceescape", f_forceescape},
    {"format", f_format},
    {"groupby", nullptr},
    {"indent", f_indent},
    {"int", f_int},
    {"items", f_items},
    {"join", f_join},
    {"last", f_last},
    {"length", f_length},
    {"list", f_list},
    {"lower", f_lower},
    {"map", f_map},
    {"max", f_max},
    {"min", f_min},
    {"pprint", nullptr},
    {"random", nullptr},
    {"reject", f_reject},
    {"rejectattr", f_rejectattr},
    {"replace", f_replace},
    {"reverse", f_reverse},
    {"round", f_round},
    {"safe", f_safe},
    {"select", f_select},
    {"selectattr", f_selectattr},
    {"slice", nullptr},
    {"sort", f_sort},
    {"string", f_string},
    {"striptags", nullptr},
    {"sum", f_sum},
    {"title", f_title},
    {"tojson", f_tojson},
    {"trim", f_trim},
    {"truncate", f_truncate},
    {"unique", f_unique},
    {"upper", f_upper},
    {"urlencode", nullptr},
    {"urlize", nullptr},
    {"wordcount", f_wordcount},
    {"wordwrap", nullptr},
    {"xmlattr", nullptr},
};

constexpr TestDef kTests[] = {
    {"!=", t_ne},
    {"<", t_lt},
    {"<=", t_le},
    {"==", t_eq},
    {">", t_gt},
    {">=", t_ge},
    {"boolean", t_boolean},
    {"callable", t_callable},
    {"defined", t_defined},
    {"divisibleby", t_divisibleby},
    {"eq", t_eq},
    {"equalto", t_eq},
    {"escaped", t_escaped},
    {"even", t_even},
    {"false", t_false},
    {"filter", t_filter},
    {"float", t_float},
    {"ge", t_ge},
    {"greaterthan", t_gt},
    {"gt", t_gt},
    {"in", t_in},
    {"integer", t_integer},
    {"iterable", t_iterable},
    {"le", t_le},
    {"lessthan", t_lt},
    {"lower", t_lower},
    {"lt", t_lt},
    {"mapping", t_mapping},
    {"ne", t_ne},
    {"none", t_none},
    {"number", t_number},
    {"odd", t_odd},
    {"sameas", t_sameas},
    {"sequence", t_sequence},
    {"string", t_string},
    {"test", t_test},
    {"true", t_true},
    {"undefined", t_undefined},
    {"upper", t_upper},
};

template <typename Def, size_t N>
const Def* lookup(const Def (&table)[N], std::string_view name) {
  for (const Def& d : table)
    if (d.name == name) return &d;
  return nullptr;
}

}  // namespace

const FilterDef* find_filter(std::string_view name) { return lookup(kFilters, name); }
const TestDef* find_test(std::string_view name) { return lookup(kTests, name); }

}  // namespace anvil::chat::jinja
