#pragma once
// The filters, tests, global functions and str/dict/list methods a template can call: the part of
// jinja2's library (plus transformers' raise_exception, strftime_now and tojson) that chat
// templates use. jinja2 names that anvil lacks are known here too, so using one is a clear
// "not supported" error at run time instead of an "unknown filter" at parse time.
#include <initializer_list>
#include <optional>
#include <string_view>
#include <vector>

#include "chat/jinja_value.h"

namespace anvil::chat::jinja {

using FilterFn = Value (*)(Interpreter& in, const Value& subject, CallArgs& args);
using TestFn = bool (*)(Interpreter& in, const Value& subject, CallArgs& args);

struct FilterDef {
  std::string_view name;
  FilterFn fn;  // null: a jinja2 filter that anvil does not implement
};
struct TestDef {
  std::string_view name;
  TestFn fn;
};

const FilterDef* find_filter(std::string_view name);
const TestDef* find_test(std::string_view name);

// range, dict, namespace, raise_exception, strftime_now; nullopt when there is no such global.
std::optional<Value> find_global(std::string_view name);

// `receiver.name` for the methods of str, dict, list and tuple: the bound method; for the mutating
// ones the immutable sandbox refuses, an undefined that says so when called; nullopt otherwise.
std::optional<Value> find_method(const Value& receiver, std::string_view name);

// Binds a call's arguments to Python-style parameters by position or by name.
class Params {
 public:
  // Failure on too many positional arguments (unless `rest` collects them), an unknown keyword or
  // one given twice.
  Params(std::string_view function, const CallArgs& args, std::initializer_list<std::string_view> names,
         bool rest = false);
  const Value* get(size_t i) const { return slots_[i]; }  // null when not passed
  bool has(size_t i) const { return slots_[i] != nullptr; }
  const Value& get_or(size_t i, const Value& fallback) const { return slots_[i] ? *slots_[i] : fallback; }
  const std::vector<const Value*>& rest() const { return rest_; }  // positionals past the named ones
  [[noreturn]] void type_error(const std::string& what) const;

  // Typed reads: a Failure naming the function and parameter when the value has the wrong type.
  int64_t integer(size_t i, int64_t fallback) const;
  bool boolean(size_t i, bool fallback) const;        // any value, by truthiness
  std::optional<std::string> string(size_t i) const;  // not passed or None: nullopt

 private:
  std::string_view function_;
  std::vector<std::string_view> names_;
  std::vector<const Value*> slots_;
  std::vector<const Value*> rest_;
};

}  // namespace anvil::chat::jinja
