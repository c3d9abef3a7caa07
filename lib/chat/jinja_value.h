#pragma once
// The values a template computes with, modelled on the Python objects Jinja2 hands around:
// undefined, None, bool, int, float, str, list/tuple, dict, jinja2's namespace, callables (macros,
// functions, bound methods) and the `loop` object. Strings, lists and dicts are immutable once
// built (transformers renders in jinja2's ImmutableSandboxedEnvironment) and shared by reference,
// so copying a value is cheap; only a namespace changes in place.
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace anvil::chat::jinja {

// An operation failed (a Python TypeError, ValueError, ...). It knows no template position: the
// interpreter catches it where it has one and reports anvil::Error with line and column.
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Containers nest at most this deep: values are destroyed, compared and printed recursively, and a
// template looping `{% set ns.x = [ns.x] %}` must hit an error, not the end of the stack.
inline constexpr int kMaxNesting = 256;

class Interpreter;
class Value;
class Dict;
struct List;
struct Namespace;
struct LoopState;
class Callable;

class Value {
 public:
  enum class Type : uint8_t { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace, Callable, Loop };

  Value() = default;                         // undefined, with the generic message
  static Value undefined(std::string hint);  // hint: what to say when the value is used ("'x' is undefined")
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value number(double d);
  static Value string(std::string s);
  // markupsafe's Markup, which `safe` and `escape` return: `+` and `%` escape the plain strings
  // they combine it with, and its str methods return Markup again.
  static Value markup(std::string s);
  static Value list(std::vector<Value> items, bool tuple = false);  // Failure when nested too deep
  // What Python hands out instead of a list: a one-pass iterator (the generators of select, map,
  // ...; `label` "generator") or a dict view (`label` "dict_items", ...).
  static Value iterator(std::vector<Value> items, const char* label = "generator");
  static Value view(std::vector<Value> items, const char* label);
  static Value from_list(std::shared_ptr<List> l);
  static Value dict(Dict d);
  static Value nspace(std::shared_ptr<Namespace> ns);
  static Value callable(std::shared_ptr<const Callable> c);
  static Value loop(std::shared_ptr<LoopState> l);

  Type type() const { return type_; }
  bool is(Type t) const { return type_ == t; }
  bool is_undefined() const { return type_ == Type::Undefined; }
  bool is_none() const { return type_ == Type::None; }
  bool is_string() const { return type_ == Type::String; }
  bool is_markup() const { return type_ == Type::String && b_; }
  bool is_list() const;  // a list or tuple (not an iterator or a dict view)
  bool is_dict() const { return type_ == Type::Dict; }
  bool is_int_like() const { return type_ == Type::Int || type_ == Type::Bool; }  // Python's bool is an int
  bool is_number() const { return is_int_like() || type_ == Type::Float; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return type_ == Type::Bool ? (b_ ? 1 : 0) : i_; }  // Int or Bool
  double as_float() const { return type_ == Type::Float ? f_ : static_cast<double>(as_int()); }
  const std::string& str() const { return *static_cast<const std::string*>(ptr_.get()); }
  const List& list() const { return *static_cast<const List*>(ptr_.get()); }
  const Dict& dict() const { return *static_cast<const Dict*>(ptr_.get()); }
  Namespace& ns() const { return *static_cast<Namespace*>(ptr_.get()); }
  const Callable& callable() const { return *static_cast<const Callable*>(ptr_.get()); }
  LoopState& loop_state() const { return *static_cast<LoopState*>(ptr_.get()); }
  std::shared_ptr<LoopState> loop_ptr() const { return std::static_pointer_cast<LoopState>(ptr_); }
  const std::string& undefined_hint() const;
  const void* identity() const { return ptr_.get(); }  // for `is sameas`

 private:
  Type type_ = Type::Undefined;
  union {
    bool b_;
    int64_t i_ = 0;
    double f_;
  };
  std::shared_ptr<void> ptr_;  // the string, list, dict, namespace, callable, loop or undefined hint
};

// A sequence: Type::List covers lists and tuples, and the iterators and views some filters and
// methods return. Those look like lists to a for loop but, as in Python, have no len() or
// indexing (iterators), cannot be serialized, and an iterator is always true and runs only once.
enum class ListKind : uint8_t { List, Tuple, Iterator, View };

struct List {
  std::vector<Value> items;
  ListKind kind = ListKind::List;
  bool tuple = false;           // kind == Tuple
  const char* label = nullptr;  // Python type name of an iterator or view
  int depth = 1;
  mutable size_t consumed = 0;  // an iterator's items before this are used up
};

inline bool Value::is_list() const {
  return type_ == Type::List && static_cast<const List*>(ptr_.get())->kind <= ListKind::Tuple;
}

// A Python dict: insertion-ordered, keys compared as Python compares them (1 == 1.0 == True).
class Dict {
 public:
  void insert(Value key, Value value);  // an equal key keeps its place and takes the new value
  const Value* find(const Value& key) const;
  const Value* find(std::string_view key) const;
  const std::vector<std::pair<Value, Value>>& items() const { return items_; }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  int depth = 1;

 private:
  static constexpr size_t npos = static_cast<size_t>(-1);
  size_t position(std::string_view key) const;
  size_t position(const Value& key) const;

  std::vector<std::pair<Value, Value>> items_;
  // String keys of large dicts, so that looking up a key stays cheap in hostile inputs.
  std::map<std::string, size_t, std::less<>> index_;
};

// jinja2's namespace(): the one mutable object, target of `{% set ns.attr = ... %}`.
struct Namespace {
  Dict attrs;
  int depth = 1;  // as of the last assignment
};

// The `loop` variable of a for loop, advanced in place.
struct LoopState {
  Value items;  // the list iterated (after the loop's `if` filter)
  size_t index0 = 0;
  int depth0 = 0;
  bool has_last = false;  // for loop.changed()
  Value last_changed;
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keywords;
};

class Callable {
 public:
  virtual ~Callable() = default;
  virtual Value call(Interpreter& in, CallArgs& args) const = 0;
  virtual std::string repr() const = 0;
  virtual bool is_macro() const { return false; }
};

// Python semantics.
bool truthy(const Value& v);
bool equal(const Value& a, const Value& b);
// -1, 0 or 1; a Failure "'<' not supported between instances of ..." for unordered types. `op` names
// the operator in that message.
int compare(const Value& a, const Value& b, const char* op);
const char* type_name(const Value& v);  // "str", "int", "NoneType", ...
int nesting(const Value& v);            // depth of containers (0 for scalars)

// str() and repr(). Output beyond `limit` bytes is a Failure, as is nesting past kMaxNesting
// (a namespace can contain itself).
void append_str(std::string& out, const Value& v, size_t limit);
void append_repr(std::string& out, const Value& v, size_t limit);
std::string to_str(const Value& v, size_t limit);
std::string format_float(double d);  // Python's repr(float)

}  // namespace anvil::chat::jinja
