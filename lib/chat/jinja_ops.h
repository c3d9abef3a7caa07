#pragma once
// Python's operators on template values: arithmetic (64-bit ints, overflow is an error rather
// than a bigint), `in`, attribute and item access with jinja2's sandboxed fallbacks, slicing,
// iteration and `%` formatting. All throw Failure, as Python would raise.
#include <string>
#include <string_view>

#include "chat/jinja_ast.h"
#include "chat/jinja_value.h"

namespace anvil::chat::jinja {

Value binary_op(Interpreter& in, BinaryOp op, const Value& a, const Value& b);
Value unary_minus(const Value& v);
Value unary_plus(const Value& v);
bool contains(Interpreter& in, const Value& container, const Value& item);  // `item in container`

// `obj.name`: for a dict, a method of dict wins over a key (as getattr does in Python), then the
// key. Missing is an undefined whose hint says what was missing; only undefined `obj` throws.
Value get_attribute(const Value& obj, std::string_view name);
// `obj[key]`: the key first, then (for a string key) the attribute.
Value get_item(const Value& obj, const Value& key);
// obj[start:stop:step]; null bounds were left out.
Value slice(Interpreter& in, const Value& obj, const Value* start, const Value* stop, const Value* step);

// What a for loop or list() walks: the list itself, a dict's keys, a string's characters; an
// undefined is empty. Anything else is "not iterable".
Value iteration_list(Interpreter& in, const Value& v);

// "fmt" % args, printf-style as Python's str % does; `markup` escapes the strings put in.
std::string percent_format(Interpreter& in, std::string_view fmt, const Value& args, bool markup = false);

}  // namespace anvil::chat::jinja
