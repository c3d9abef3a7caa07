#include "chat/jinja_ops.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <optional>

#include "chat/jinja_builtins.h"
#include "chat/jinja_eval.h"
#include "chat/jinja_text.h"

namespace anvil::chat::jinja {

namespace {

[[noreturn]] void overflow() { throw Failure("integer overflow (template integers are 64-bit)"); }

void check_defined(const Value& v) {
  if (v.is_undefined()) throw Failure(v.undefined_hint());
}

[[noreturn]] void unsupported(const char* op, const Value& a, const Value& b) {
  throw Failure(std::string("unsupported operand type(s) for ") + op + ": '" + type_name(a) + "' and '" + type_name(b) +
                "'");
}

Value repeat(Interpreter& in, const Value& seq, int64_t n) {
  if (n < 0) n = 0;
  if (seq.is_string()) {
    const std::string& s = seq.str();
    if (!s.empty() && static_cast<uint64_t>(n) > in.limits().max_output / s.size())
      throw Failure("the string would be larger than " + std::to_string(in.limits().max_output) + " bytes");
    in.spend_bytes(s.size() * static_cast<size_t>(n));
    std::string out;
    out.reserve(s.size() * static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) out += s;
    return seq.is_markup() ? Value::markup(std::move(out)) : Value::string(std::move(out));
  }
  const List& l = seq.list();
  if (!l.items.empty() && n > in.limits().max_steps / static_cast<int64_t>(l.items.size()))
    throw Failure("the list would have more than " + std::to_string(in.limits().max_steps) + " items");
  in.spend_steps(n * static_cast<int64_t>(l.items.size()));
  std::vector<Value> out;
  out.reserve(l.items.size() * static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), l.items.begin(), l.items.end());
  return Value::list(std::move(out), l.tuple);
}

// Python's float divmod, which floors toward negative infinity and keeps the divisor's sign.
std::pair<double, double> float_divmod(double a, double b) {
  double mod = std::fmod(a, b);
  double div = (a - mod) / b;
  if (mod != 0) {
    if ((b < 0) != (mod < 0)) {
      mod += b;
      div -= 1.0;
    }
  } else {
    mod = std::copysign(0.0, b);
  }
  double floordiv;
  if (div != 0) {
    floordiv = std::floor(div);
    if (div - floordiv > 0.5) floordiv += 1.0;
  } else {
    floordiv = std::copysign(0.0, a / b);
  }
  return {floordiv, mod};
}

Value int_pow(int64_t base, int64_t exp) {
  int64_t result = 1;
  while (exp > 0) {
    if (exp & 1)
      if (__builtin_mul_overflow(result, base, &result)) overflow();
    exp >>= 1;
    if (exp > 0 && __builtin_mul_overflow(base, base, &base)) overflow();
  }
  return Value::integer(result);
}

Value arithmetic(BinaryOp op, const Value& a, const Value& b) {
  const char* sym = op == BinaryOp::Sub        ? "-"
                    : op == BinaryOp::Mul      ? "*"
                    : op == BinaryOp::Div      ? "/"
                    : op == BinaryOp::FloorDiv ? "//"
                    : op == BinaryOp::Mod      ? "%"
                    : op == BinaryOp::Pow      ? "**"
                                               : "+";
  if (!a.is_number() || !b.is_number()) unsupported(sym, a, b);
  if (a.is_int_like() && b.is_int_like() && op != BinaryOp::Div) {
    const int64_t x = a.as_int(), y = b.as_int();
    int64_t r = 0;
    switch (op) {
      case BinaryOp::Add:
        if (__builtin_add_overflow(x, y, &r)) overflow();
        return Value::integer(r);
      case BinaryOp::Sub:
        if (__builtin_sub_overflow(x, y, &r)) overflow();
        return Value::integer(r);
      case BinaryOp::Mul:
        if (__builtin_mul_overflow(x, y, &r)) overflow();
        return Value::integer(r);
      case BinaryOp::FloorDiv:
      case BinaryOp::Mod: {
        if (y == 0) throw Failure("integer division or modulo by zero");
        if (x == INT64_MIN && y == -1) {
          if (op == BinaryOp::Mod) return Value::integer(0);
          overflow();
        }
        int64_t q = x / y, m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) {
          m += y;
          --q;
        }
        return Value::integer(op == BinaryOp::FloorDiv ? q : m);
      }
      case BinaryOp::Pow:
        if (y >= 0) return int_pow(x, y);
        if (x == 0) throw Failure("0.0 cannot be raised to a negative power");
        return Value::number(std::pow(static_cast<double>(x), static_cast<double>(y)));
      default: break;
    }
  }
  const double x = a.as_float(), y = b.as_float();
  switch (op) {
    case BinaryOp::Add: return Value::number(x + y);
    case BinaryOp::Sub: return Value::number(x - y);
    case BinaryOp::Mul: return Value::number(x * y);
    case BinaryOp::Div:
      if (y == 0) throw Failure("division by zero");
      return Value::number(x / y);
    case BinaryOp::FloorDiv:
      if (y == 0) throw Failure("float floor division by zero");
      return Value::number(float_divmod(x, y).first);
    case BinaryOp::Mod:
      if (y == 0) throw Failure("float modulo");
      return Value::number(float_divmod(x, y).second);
    case BinaryOp::Pow:
      if (x == 0 && y < 0) throw Failure("0.0 cannot be raised to a negative power");
      if (x < 0 && y != std::floor(y))
        throw Failure("a negative number to a fractional power is complex (not supported)");
      return Value::number(std::pow(x, y));
  }
  return Value::none();
}

}  // namespace

Value binary_op(Interpreter& in, BinaryOp op, const Value& a, const Value& b) {
  check_defined(a);
  check_defined(b);
  switch (op) {
    case BinaryOp::Add:
      if (a.is_string() || b.is_string()) {
        if (!a.is_string() || !b.is_string()) {
          if (!a.is_string()) unsupported("+", a, b);
          throw Failure(std::string("can only concatenate str (not \"") + type_name(b) + "\") to str");
        }
        in.spend_bytes(a.str().size() + b.str().size());
        if (a.is_markup() || b.is_markup()) {  // Markup escapes the plain side
          return Value::markup((a.is_markup() ? a.str() : text::html_escape(a.str())) +
                               (b.is_markup() ? b.str() : text::html_escape(b.str())));
        }
        return Value::string(a.str() + b.str());
      }
      if (a.is_list() || b.is_list()) {
        if (!a.is_list() || !b.is_list() || a.list().tuple != b.list().tuple) {
          if (!a.is_list()) unsupported("+", a, b);
          throw Failure(std::string("can only concatenate ") + type_name(a) + " (not \"" + type_name(b) + "\") to " +
                        type_name(a));
        }
        const auto& x = a.list().items;
        const auto& y = b.list().items;
        in.spend_steps(static_cast<int64_t>(x.size() + y.size()));
        std::vector<Value> items;
        items.reserve(x.size() + y.size());
        items.insert(items.end(), x.begin(), x.end());
        items.insert(items.end(), y.begin(), y.end());
        return Value::list(std::move(items), a.list().tuple);
      }
      return arithmetic(op, a, b);
    case BinaryOp::Mul:
      if ((a.is_string() || a.is_list()) && b.is_int_like()) return repeat(in, a, b.as_int());
      if ((b.is_string() || b.is_list()) && a.is_int_like()) return repeat(in, b, a.as_int());
      if (a.is_string() || a.is_list() || b.is_string() || b.is_list()) {
        const Value& other = a.is_string() || a.is_list() ? b : a;
        throw Failure(std::string("can't multiply sequence by non-int of type '") + type_name(other) + "'");
      }
      return arithmetic(op, a, b);
    case BinaryOp::Mod:
      if (a.is_markup()) return Value::markup(percent_format(in, a.str(), b, true));
      if (a.is_string()) return Value::string(percent_format(in, a.str(), b));
      return arithmetic(op, a, b);
    default: return arithmetic(op, a, b);
  }
}

Value unary_minus(const Value& v) {
  check_defined(v);
  if (v.is_int_like()) {
    if (v.as_int() == INT64_MIN) overflow();
    return Value::integer(-v.as_int());
  }
  if (v.is(Value::Type::Float)) return Value::number(-v.as_float());
  throw Failure(std::string("bad operand type for unary -: '") + type_name(v) + "'");
}

Value unary_plus(const Value& v) {
  check_defined(v);
  if (v.is_int_like()) return Value::integer(v.as_int());
  if (v.is(Value::Type::Float)) return v;
  throw Failure(std::string("bad operand type for unary +: '") + type_name(v) + "'");
}

bool contains(Interpreter& in, const Value& container, const Value& item) {
  switch (container.type()) {
    case Value::Type::String:
      if (!item.is_string()) {
        check_defined(item);
        throw Failure(std::string("'in <string>' requires string as left operand, not ") + type_name(item));
      }
      return text::find(container.str(), item.str()) != std::string::npos;
    case Value::Type::List: {
      const List& l = container.list();
      const bool once = l.kind == ListKind::Iterator;  // an iterator is used up to the match
      for (size_t i = once ? l.consumed : 0; i < l.items.size(); ++i) {
        in.spend_steps(1);
        if (!equal(l.items[i], item)) continue;
        if (once) l.consumed = i + 1;
        return true;
      }
      if (once) l.consumed = l.items.size();
      return false;
    }
    case Value::Type::Dict: return container.dict().find(item) != nullptr;
    case Value::Type::Undefined: return false;  // jinja2's Undefined iterates as empty
    default: throw Failure(std::string("argument of type '") + type_name(container) + "' is not iterable");
  }
}

// ---------------------------------------------------------------------------------------------
// Attributes and items

namespace {

std::string object_name(const Value& v) {
  if (v.is_none()) return "None";
  if (v.is(Value::Type::Namespace)) return "'namespace object'";
  return std::string("'") + type_name(v) + " object'";
}

Value no_attribute(const Value& obj, std::string_view name) {
  return Value::undefined(object_name(obj) + " has no attribute '" + std::string(name) + "'");
}

Value no_element(const Value& obj, const Value& key) {
  std::string k;
  append_repr(k, key, 200);
  return Value::undefined(std::string(obj.is_none() ? "None" : type_name(obj)) + " object has no element " + k);
}

class LoopCycle : public Callable {
 public:
  explicit LoopCycle(std::shared_ptr<LoopState> loop) : loop_(std::move(loop)) {}
  Value call(Interpreter&, CallArgs& args) const override {
    if (!args.keywords.empty()) throw Failure("loop.cycle() takes no keyword arguments");
    if (args.positional.empty()) throw Failure("no items for cycling given");
    return args.positional[loop_->index0 % args.positional.size()];
  }
  std::string repr() const override { return "<bound method LoopContext.cycle>"; }

 private:
  std::shared_ptr<LoopState> loop_;
};

// loop.changed(*values): true when the values differ from the previous call's.
class LoopChanged : public Callable {
 public:
  explicit LoopChanged(std::shared_ptr<LoopState> loop) : loop_(std::move(loop)) {}
  Value call(Interpreter&, CallArgs& args) const override {
    Value now = Value::list(args.positional);
    if (loop_->has_last && equal(loop_->last_changed, now)) return Value::boolean(false);
    loop_->has_last = true;
    loop_->last_changed = std::move(now);
    return Value::boolean(true);
  }
  std::string repr() const override { return "<bound method LoopContext.changed>"; }

 private:
  std::shared_ptr<LoopState> loop_;
};

Value loop_attribute(const Value& loop, std::string_view name) {
  LoopState& l = loop.loop_state();
  const auto& items = l.items.list().items;
  const auto n = static_cast<int64_t>(items.size());
  const auto i = static_cast<int64_t>(l.index0);
  if (name == "index") return Value::integer(i + 1);
  if (name == "index0") return Value::integer(i);
  if (name == "revindex") return Value::integer(n - i);
  if (name == "revindex0") return Value::integer(n - i - 1);
  if (name == "first") return Value::boolean(i == 0);
  if (name == "last") return Value::boolean(i == n - 1);
  if (name == "length") return Value::integer(n);
  if (name == "depth") return Value::integer(l.depth0 + 1);
  if (name == "depth0") return Value::integer(l.depth0);
  if (name == "previtem")
    return i > 0 ? items[static_cast<size_t>(i - 1)] : Value::undefined("there is no previous item");
  if (name == "nextitem")
    return i + 1 < n ? items[static_cast<size_t>(i + 1)] : Value::undefined("there is no next item");
  // The state is shared with the loop variable, so these see the loop advance.
  if (name == "cycle") return Value::callable(std::make_shared<LoopCycle>(loop.loop_ptr()));
  if (name == "changed") return Value::callable(std::make_shared<LoopChanged>(loop.loop_ptr()));
  return no_attribute(loop, name);
}

// Index into a string by code point; empty when out of range.
std::string code_point_at(const std::string& s, int64_t index) {
  if (text::is_ascii(s)) {
    const auto n = static_cast<int64_t>(s.size());
    if (index < 0) index += n;
    if (index < 0 || index >= n) return {};
    return std::string(1, s[static_cast<size_t>(index)]);
  }
  const auto offsets = text::code_point_offsets(s);
  const auto n = static_cast<int64_t>(offsets.size()) - 1;
  if (index < 0) index += n;
  if (index < 0 || index >= n) return {};
  const size_t a = offsets[static_cast<size_t>(index)], b = offsets[static_cast<size_t>(index) + 1];
  return s.substr(a, b - a);
}

}  // namespace

Value get_attribute(const Value& obj, std::string_view name) {
  check_defined(obj);
  if (name.starts_with("__"))
    return Value::undefined("access to attribute '" + std::string(name) + "' of '" + type_name(obj) +
                            "' object is unsafe.");
  switch (obj.type()) {
    case Value::Type::Dict: {
      if (auto m = find_method(obj, name)) return *m;
      if (const Value* v = obj.dict().find(name)) return *v;
      return no_attribute(obj, name);
    }
    case Value::Type::String:
    case Value::Type::List:
      if (auto m = find_method(obj, name)) return *m;
      return no_attribute(obj, name);
    case Value::Type::Namespace:
      if (const Value* v = obj.ns().attrs.find(name)) return *v;
      return no_attribute(obj, name);
    case Value::Type::Loop: return loop_attribute(obj, name);
    default: return no_attribute(obj, name);
  }
}

Value get_item(const Value& obj, const Value& key) {
  check_defined(obj);
  switch (obj.type()) {
    case Value::Type::Dict:
      if (const Value* v = obj.dict().find(key)) return *v;
      break;
    case Value::Type::List:
      if (!obj.is_list()) return Value::undefined(std::string("'") + type_name(obj) + "' object is not subscriptable");
      if (key.is_int_like()) {
        const auto& items = obj.list().items;
        int64_t i = key.as_int();
        if (i < 0) i += static_cast<int64_t>(items.size());
        if (i >= 0 && i < static_cast<int64_t>(items.size())) return items[static_cast<size_t>(i)];
        return no_element(obj, key);
      }
      break;
    case Value::Type::String:
      if (key.is_int_like()) {
        std::string c = code_point_at(obj.str(), key.as_int());
        if (c.empty()) return no_element(obj, key);
        return obj.is_markup() ? Value::markup(std::move(c)) : Value::string(std::move(c));
      }
      break;
    default: break;
  }
  if (key.is_string()) {
    if (obj.is_dict()) {
      if (auto m = find_method(obj, key.str())) return *m;
      return no_attribute(obj, key.str());
    }
    return get_attribute(obj, key.str());
  }
  return no_element(obj, key);
}

Value slice(Interpreter& in, const Value& obj, const Value* start, const Value* stop, const Value* step) {
  check_defined(obj);
  if (!obj.is_string() && !obj.is_list())
    return Value::undefined(std::string("'") + type_name(obj) + "' object is not subscriptable");
  bool ok = true;
  auto bound = [&](const Value* v) -> std::optional<int64_t> {
    if (!v || v->is_none()) return std::nullopt;
    if (v->is_undefined()) throw Failure("slice indices must be integers or None or have an __index__ method");
    if (!v->is_int_like()) ok = false;
    return v->is_int_like() ? std::optional<int64_t>(v->as_int()) : std::nullopt;
  };
  const auto b = bound(start), e = bound(stop), s = bound(step);
  // Python raises TypeError for other bounds, and jinja2 turns that into undefined.
  if (!ok) return Value::undefined("slice indices must be integers or None");
  const int64_t st = s.value_or(1);
  if (st == 0) throw Failure("slice step cannot be zero");

  std::vector<size_t> offsets;  // code point offsets of a non-ASCII string
  const bool ascii = obj.is_string() && text::is_ascii(obj.str());
  if (obj.is_string() && !ascii) offsets = text::code_point_offsets(obj.str());
  const int64_t n = obj.is_list() ? static_cast<int64_t>(obj.list().items.size())
                    : ascii       ? static_cast<int64_t>(obj.str().size())
                                  : static_cast<int64_t>(offsets.size()) - 1;
  auto clamp = [&](std::optional<int64_t> v, int64_t fallback) {
    if (!v) return fallback;
    int64_t x = *v;
    if (x < 0) x += n;
    if (st > 0) return std::clamp<int64_t>(x, 0, n);
    return std::clamp<int64_t>(x, -1, n - 1);
  };
  const int64_t first = clamp(b, st > 0 ? 0 : n - 1);
  const int64_t last = clamp(e, st > 0 ? n : -1);
  int64_t count = 0;
  if (st > 0 && last > first) count = (last - first + st - 1) / st;
  if (st < 0 && first > last) count = (first - last - st - 1) / -st;
  in.spend_steps(count);
  if (obj.is_list()) {
    std::vector<Value> items;
    items.reserve(static_cast<size_t>(count));
    for (int64_t k = 0, i = first; k < count; ++k, i += st) items.push_back(obj.list().items[static_cast<size_t>(i)]);
    return Value::list(std::move(items), obj.list().tuple);
  }
  const std::string& str = obj.str();
  std::string out;
  if (st == 1 && count > 0) {
    const size_t from = ascii ? static_cast<size_t>(first) : offsets[static_cast<size_t>(first)];
    const size_t to = ascii ? static_cast<size_t>(first + count) : offsets[static_cast<size_t>(first + count)];
    out = str.substr(from, to - from);
  } else {
    for (int64_t k = 0, i = first; k < count; ++k, i += st) {
      if (ascii) out += str[static_cast<size_t>(i)];
      else
        out.append(str, offsets[static_cast<size_t>(i)],
                   offsets[static_cast<size_t>(i) + 1] - offsets[static_cast<size_t>(i)]);
    }
  }
  return obj.is_markup() ? Value::markup(std::move(out)) : Value::string(std::move(out));
}

Value iteration_list(Interpreter& in, const Value& v) {
  switch (v.type()) {
    case Value::Type::List: {
      const List& l = v.list();
      if (l.kind != ListKind::Iterator) return v;
      std::vector<Value> rest(l.items.begin() + static_cast<std::ptrdiff_t>(l.consumed), l.items.end());
      l.consumed = l.items.size();
      return Value::list(std::move(rest));
    }
    case Value::Type::Undefined: return Value::list({});
    case Value::Type::Dict: {
      std::vector<Value> keys;
      keys.reserve(v.dict().size());
      for (const auto& [key, value] : v.dict().items()) keys.push_back(key);
      in.spend_steps(static_cast<int64_t>(keys.size()));
      return Value::list(std::move(keys));
    }
    case Value::Type::String: {
      std::vector<Value> chars;
      const std::string& s = v.str();
      for (size_t i = 0; i < s.size();) {
        const size_t start = i;
        text::next_code_point(s, i);
        chars.push_back(Value::string(s.substr(start, i - start)));
      }
      in.spend_steps(static_cast<int64_t>(chars.size()));
      return Value::list(std::move(chars));
    }
    default: throw Failure(std::string("'") + type_name(v) + "' object is not iterable");
  }
}

// ---------------------------------------------------------------------------------------------
// printf-style formatting

namespace {

template <typename T>
std::string c_format(const std::string& spec, T value) {
  const int n = std::snprintf(nullptr, 0, spec.c_str(), value);
  if (n < 0) throw Failure("invalid format specification '" + spec + "'");
  std::string out(static_cast<size_t>(n) + 1, '\0');
  std::snprintf(out.data(), out.size(), spec.c_str(), value);
  out.pop_back();
  return out;
}

// Width and precision of %s count code points, as Python's do.
std::string pad_text(std::string s, const std::string& flags, int width, int precision) {
  if (precision >= 0) {
    const auto offsets = text::code_point_offsets(s);
    if (static_cast<size_t>(precision) + 1 < offsets.size()) s.resize(offsets[static_cast<size_t>(precision)]);
  }
  const auto n = static_cast<int>(text::code_point_count(s));
  if (n >= width) return s;
  const std::string pad(static_cast<size_t>(width - n), ' ');
  return flags.find('-') != std::string::npos ? s + pad : pad + s;
}

}  // namespace

std::string percent_format(Interpreter& in, std::string_view fmt, const Value& args, bool markup) {
  std::vector<Value> positional;
  const Dict* mapping = nullptr;
  if (args.is_list() && args.list().tuple) positional = args.list().items;
  else if (args.is_dict()) mapping = &args.dict();
  else positional.push_back(args);
  size_t next = 0;
  std::string out;
  const size_t limit = in.limits().max_output;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    if (++i >= fmt.size()) throw Failure("incomplete format");
    const Value* arg = nullptr;
    if (fmt[i] == '(') {
      const size_t close = fmt.find(')', i);
      if (close == std::string_view::npos) throw Failure("incomplete format key");
      if (!mapping) throw Failure("format requires a mapping");
      arg = mapping->find(fmt.substr(i + 1, close - i - 1));
      if (!arg) throw Failure("KeyError: '" + std::string(fmt.substr(i + 1, close - i - 1)) + "'");
      i = close + 1;
    }
    std::string flags;
    while (i < fmt.size() && std::string_view("-+ #0").find(fmt[i]) != std::string_view::npos) flags += fmt[i++];
    int width = 0, precision = -1;
    auto number = [&](int& target) {
      target = 0;
      for (int k = 0; i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i])); ++i, ++k) {
        if (k >= 4) throw Failure("format width or precision too large");
        target = target * 10 + (fmt[i] - '0');
      }
    };
    number(width);
    if (i < fmt.size() && fmt[i] == '.') {
      ++i;
      number(precision);
    }
    if (i >= fmt.size()) throw Failure("incomplete format");
    const char conv = fmt[i];
    if (conv == '%') {
      out += '%';
      continue;
    }
    if (!arg) {
      if (next >= positional.size()) throw Failure("not enough arguments for format string");
      arg = &positional[next++];
    }
    std::string spec =
        "%" + flags + (width ? std::to_string(width) : "") + (precision >= 0 ? "." + std::to_string(precision) : "");
    switch (conv) {
      case 's':
      case 'r':
      case 'a': {
        std::string s;
        if (conv == 's') append_str(s, *arg, limit);
        else append_repr(s, *arg, limit);
        if (markup && !arg->is_markup()) s = text::html_escape(s);  // Markup % x escapes x
        out += pad_text(std::move(s), flags, width, precision);
        break;
      }
      case 'd':
      case 'i':
      case 'u':
      case 'x':
      case 'X':
      case 'o':
      case 'c': {
        if (!arg->is_number())
          throw Failure(std::string("%") + conv + " format: a real number is required, not " + type_name(*arg));
        const double f = arg->as_float();
        if (!arg->is_int_like() && !std::isfinite(f)) throw Failure("cannot convert float infinity or NaN to integer");
        const auto v = static_cast<long long>(arg->is_int_like() ? arg->as_int() : static_cast<int64_t>(std::trunc(f)));
        if (conv == 'c') text::append_utf8(out, static_cast<char32_t>(v));
        else out += c_format(spec + "ll" + (conv == 'i' || conv == 'u' ? 'd' : conv), v);
        break;
      }
      case 'e':
      case 'E':
      case 'f':
      case 'F':
      case 'g':
      case 'G':
        if (!arg->is_number()) throw Failure(std::string("must be real number, not ") + type_name(*arg));
        out += c_format(spec + conv, arg->as_float());
        break;
      default: throw Failure(std::string("unsupported format character '") + conv + "'");
    }
    if (out.size() > limit) throw Failure("the string would be larger than " + std::to_string(limit) + " bytes");
  }
  if (!mapping && next < positional.size()) throw Failure("not all arguments converted during string formatting");
  in.spend_bytes(out.size());
  return out;
}

}  // namespace anvil::chat::jinja
