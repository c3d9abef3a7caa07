#include "chat/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "chat/jinja_budget.h"
#include "chat/jinja_text.h"

namespace anvil::chat::jinja {

Value Value::undefined(std::string hint) {
  Value v;
  v.ptr_ = std::make_shared<std::string>(std::move(hint));
  return v;
}
Value Value::none() {
  Value v;
  v.type_ = Type::None;
  return v;
}
Value Value::boolean(bool b) {
  Value v;
  v.type_ = Type::Bool;
  v.b_ = b;
  return v;
}
Value Value::integer(int64_t i) {
  Value v;
  v.type_ = Type::Int;
  v.i_ = i;
  return v;
}
Value Value::number(double d) {
  Value v;
  v.type_ = Type::Float;
  v.f_ = d;
  return v;
}
Value Value::string(std::string s) {
  Value v;
  v.type_ = Type::String;
  v.b_ = false;
  v.ptr_ = std::make_shared<std::string>(std::move(s));
  return v;
}
Value Value::markup(std::string s) {
  Value v = string(std::move(s));
  v.b_ = true;
  return v;
}

static int deepest(int depth, const Value& child) { return std::max(depth, nesting(child) + 1); }

static void check_depth(int depth) {
  if (depth > kMaxNesting)
    throw Failure("lists, dicts and namespaces nest deeper than " + std::to_string(kMaxNesting) + " levels");
}

static Value make_sequence(std::vector<Value> items, ListKind kind, const char* label) {
  auto l = std::make_shared<List>();
  for (const Value& item : items) l->depth = deepest(l->depth, item);
  check_depth(l->depth);
  l->items = std::move(items);
  l->kind = kind;
  l->tuple = kind == ListKind::Tuple;
  l->label = label;
  return Value::from_list(std::move(l));
}

Value Value::from_list(std::shared_ptr<List> l) {
  Value v;
  v.type_ = Type::List;
  v.ptr_ = std::move(l);
  return v;
}

Value Value::list(std::vector<Value> items, bool tuple) {
  return make_sequence(std::move(items), tuple ? ListKind::Tuple : ListKind::List, nullptr);
}
Value Value::iterator(std::vector<Value> items, const char* label) {
  return make_sequence(std::move(items), ListKind::Iterator, label);
}
Value Value::view(std::vector<Value> items, const char* label) {
  return make_sequence(std::move(items), ListKind::View, label);
}
Value Value::dict(Dict d) {
  d.depth = 1;
  for (const auto& [key, value] : d.items()) d.depth = deepest(d.depth, value);
  check_depth(d.depth);
  Value v;
  v.type_ = Type::Dict;
  v.ptr_ = std::make_shared<Dict>(std::move(d));
  return v;
}
Value Value::nspace(std::shared_ptr<Namespace> ns) {
  Value v;
  v.type_ = Type::Namespace;
  v.ptr_ = std::move(ns);
  return v;
}
Value Value::callable(std::shared_ptr<const Callable> c) {
  Value v;
  v.type_ = Type::Callable;
  v.ptr_ = std::const_pointer_cast<Callable>(std::move(c));
  return v;
}
Value Value::loop(std::shared_ptr<LoopState> l) {
  Value v;
  v.type_ = Type::Loop;
  v.ptr_ = std::move(l);
  return v;
}

const std::string& Value::undefined_hint() const {
  static const std::string generic = "a value is undefined";
  return ptr_ ? *static_cast<const std::string*>(ptr_.get()) : generic;
}

// ---------------------------------------------------------------------------------------------
// Dict

static constexpr size_t kIndexFrom = 16;  // linear search is faster below this many keys

void Dict::insert(Value key, Value value) {
  const size_t at = position(key);
  if (at != npos) {
    items_[at].second = std::move(value);
    return;
  }
  if (key.is_string() && !index_.empty()) index_.emplace(key.str(), items_.size());
  items_.emplace_back(std::move(key), std::move(value));
  if (items_.size() == kIndexFrom) {
    for (size_t i = 0; i < items_.size(); ++i)
      if (items_[i].first.is_string()) index_.emplace(items_[i].first.str(), i);
  }
}

size_t Dict::position(std::string_view key) const {
  spend_bytes(key.size());
  if (items_.size() >= kIndexFrom) {
    auto it = index_.find(key);
    return it == index_.end() ? npos : it->second;
  }
  for (size_t i = 0; i < items_.size(); ++i)
    if (items_[i].first.is_string() && items_[i].first.str() == key) return i;
  return npos;
}

size_t Dict::position(const Value& key) const {
  if (key.is_string()) return position(std::string_view(key.str()));
  spend_steps(static_cast<int64_t>(items_.size()));
  for (size_t i = 0; i < items_.size(); ++i)
    if (!items_[i].first.is_string() && equal(items_[i].first, key)) return i;
  return npos;
}

const Value* Dict::find(std::string_view key) const {
  const size_t at = position(key);
  return at == npos ? nullptr : &items_[at].second;
}

const Value* Dict::find(const Value& key) const {
  const size_t at = position(key);
  return at == npos ? nullptr : &items_[at].second;
}

// ---------------------------------------------------------------------------------------------
// Python semantics

int nesting(const Value& v) {
  switch (v.type()) {
    case Value::Type::List: return v.list().depth;
    case Value::Type::Dict: return v.dict().depth;
    case Value::Type::Namespace: return v.ns().depth;
    default: return 0;
  }
}

bool truthy(const Value& v) {
  switch (v.type()) {
    case Value::Type::Undefined:
    case Value::Type::None: return false;
    case Value::Type::Bool: return v.as_bool();
    case Value::Type::Int: return v.as_int() != 0;
    case Value::Type::Float: return v.as_float() != 0.0;
    case Value::Type::String: return !v.str().empty();
    case Value::Type::List: return v.list().kind == ListKind::Iterator || !v.list().items.empty();
    case Value::Type::Dict: return !v.dict().empty();
    default: return true;
  }
}

bool equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_int_like() && b.is_int_like()) return a.as_int() == b.as_int();
    return a.as_float() == b.as_float();
  }
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case Value::Type::Undefined:
    case Value::Type::None: return true;
    case Value::Type::String:
      if (a.str().size() != b.str().size()) return false;
      spend_bytes(a.str().size());
      return a.str() == b.str();
    case Value::Type::List: {
      const List& x = a.list();
      const List& y = b.list();
      if (!a.is_list() || !b.is_list()) return a.identity() == b.identity();
      if (x.tuple != y.tuple || x.items.size() != y.items.size()) return false;
      spend_steps(static_cast<int64_t>(x.items.size()));
      for (size_t i = 0; i < x.items.size(); ++i)
        if (!equal(x.items[i], y.items[i])) return false;
      return true;
    }
    case Value::Type::Dict: {
      const Dict& x = a.dict();
      const Dict& y = b.dict();
      if (x.size() != y.size()) return false;
      spend_steps(static_cast<int64_t>(x.size()));
      for (const auto& [key, value] : x.items()) {
        const Value* other = y.find(key);
        if (!other || !equal(value, *other)) return false;
      }
      return true;
    }
    default: return a.identity() == b.identity();
  }
}

const char* type_name(const Value& v) {
  switch (v.type()) {
    case Value::Type::Undefined: return "Undefined";
    case Value::Type::None: return "NoneType";
    case Value::Type::Bool: return "bool";
    case Value::Type::Int: return "int";
    case Value::Type::Float: return "float";
    case Value::Type::String: return "str";
    case Value::Type::List: return v.list().label ? v.list().label : v.list().tuple ? "tuple" : "list";
    case Value::Type::Dict: return "dict";
    case Value::Type::Namespace: return "Namespace";
    case Value::Type::Callable: return v.callable().is_macro() ? "Macro" : "builtin_function_or_method";
    case Value::Type::Loop: return "LoopContext";
  }
  return "object";
}

int compare(const Value& a, const Value& b, const char* op) {
  if (a.is_undefined()) throw Failure(a.undefined_hint());
  if (b.is_undefined()) throw Failure(b.undefined_hint());
  if (a.is_number() && b.is_number()) {
    if (a.is_int_like() && b.is_int_like()) return a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int() ? 1 : 0;
    const double x = a.as_float(), y = b.as_float();
    return x < y ? -1 : x > y ? 1 : 0;  // NaN compares as neither, like Python's < and >
  }
  if (a.is_string() && b.is_string()) {
    spend_bytes(std::min(a.str().size(), b.str().size()));
    const int c = a.str().compare(b.str());  // UTF-8 byte order is code point order
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_list() && b.is_list() && a.list().tuple == b.list().tuple) {
    const auto& x = a.list().items;
    const auto& y = b.list().items;
    spend_steps(static_cast<int64_t>(std::min(x.size(), y.size())));
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (equal(x[i], y[i])) continue;
      return compare(x[i], y[i], op);
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  throw Failure(std::string("'") + op + "' not supported between instances of '" + type_name(a) + "' and '" +
                type_name(b) + "'");
}

// ---------------------------------------------------------------------------------------------
// Printing

std::string format_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);  // shortest round trip
  std::string_view s(buf, static_cast<size_t>(res.ptr - buf));
  std::string out;
  if (s.front() == '-') {
    out += '-';
    s.remove_prefix(1);
  }
  const size_t e = s.find('e');
  std::string digits;
  for (char c : s.substr(0, e))
    if (c != '.') digits += c;
  const int exp = std::atoi(std::string(s.substr(e + 1)).c_str());
  // Python switches to exponent notation outside 1e-5 < |d| < 1e16 (float_repr_style 'short').
  const int point = exp + 1;  // digits are 0.DIGITS x 10^point
  if (point > -4 && point <= 16) {
    const auto n = static_cast<int>(digits.size());
    if (point <= 0) out += "0." + std::string(static_cast<size_t>(-point), '0') + digits;
    else if (point >= n) out += digits + std::string(static_cast<size_t>(point - n), '0') + ".0";
    else out += digits.substr(0, static_cast<size_t>(point)) + "." + digits.substr(static_cast<size_t>(point));
  } else {
    out += digits[0];
    if (digits.size() > 1) out += "." + digits.substr(1);
    out += exp < 0 ? "e-" : "e+";
    const int mag = std::abs(exp);
    if (mag < 10) out += '0';
    out += std::to_string(mag);
  }
  return out;
}

namespace {

struct Printer {
  std::string& out;
  size_t limit;

  void check() const {
    if (out.size() > limit) throw Failure("the printed value is larger than " + std::to_string(limit) + " bytes");
  }

  void repr(const Value& v, int depth) {
    if (depth > kMaxNesting) throw Failure("the value nests too deeply to print");
    switch (v.type()) {
      case Value::Type::Undefined: out += "Undefined"; break;
      case Value::Type::None: out += "None"; break;
      case Value::Type::Bool: out += v.as_bool() ? "True" : "False"; break;
      case Value::Type::Int: out += std::to_string(v.as_int()); break;
      case Value::Type::Float: out += format_float(v.as_float()); break;
      case Value::Type::String:
        if (v.is_markup()) out += "Markup(";
        text::append_repr(out, v.str());
        if (v.is_markup()) out += ')';
        break;
      case Value::Type::List: {
        const List& l = v.list();
        if (l.kind == ListKind::Iterator) {
          out += std::string("<") + l.label + " object>";
          break;
        }
        if (l.kind == ListKind::View) out += std::string(l.label) + "(";
        out += l.tuple ? '(' : '[';
        for (size_t i = 0; i < l.items.size(); ++i) {
          if (i) out += ", ";
          repr(l.items[i], depth + 1);
          check();
        }
        if (l.tuple && l.items.size() == 1) out += ',';
        out += l.tuple ? ')' : ']';
        if (l.kind == ListKind::View) out += ')';
        break;
      }
      case Value::Type::Dict: dict(v.dict(), depth); break;
      case Value::Type::Namespace:
        out += "<Namespace ";
        dict(v.ns().attrs, depth);
        out += '>';
        break;
      case Value::Type::Callable: out += v.callable().repr(); break;
      case Value::Type::Loop: {
        const LoopState& l = v.loop_state();
        out += "<LoopContext " + std::to_string(l.index0 + 1) + "/" + std::to_string(l.items.list().items.size()) + ">";
        break;
      }
    }
    check();
  }

  void dict(const Dict& d, int depth) {
    out += '{';
    bool first = true;
    for (const auto& [key, value] : d.items()) {
      if (!first) out += ", ";
      first = false;
      repr(key, depth + 1);
      out += ": ";
      repr(value, depth + 1);
      check();
    }
    out += '}';
  }
};

}  // namespace

void append_repr(std::string& out, const Value& v, size_t limit) {
  const size_t before = out.size();
  Printer{out, limit}.repr(v, 0);
  spend_bytes(out.size() - before);
}

void append_str(std::string& out, const Value& v, size_t limit) {
  if (v.is_undefined()) return;
  if (v.is_string()) {
    out += v.str();
    Printer{out, limit}.check();
    spend_bytes(v.str().size());
    return;
  }
  append_repr(out, v, limit);
}

std::string to_str(const Value& v, size_t limit) {
  if (v.is_string()) {
    spend_bytes(v.str().size());  // a copy
    return v.str();
  }
  std::string out;
  append_str(out, v, limit);
  return out;
}

}  // namespace anvil::chat::jinja
