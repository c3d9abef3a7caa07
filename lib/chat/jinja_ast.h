#pragma once
// The parsed template. Every node keeps the byte offset it came from, so runtime errors can name
// a line and column. Filters and tests are resolved to their implementation once, while parsing.
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "chat/jinja_lexer.h"
#include "chat/jinja_value.h"

namespace anvil::chat::jinja {

struct FilterDef;
struct TestDef;

enum class ExprKind : uint8_t {
  Literal,      // value
  Name,         // name
  List,         // operands: items
  Tuple,        // operands: items
  Dict,         // operands: key, value, key, value, ...
  Attribute,    // operands: object; name: attribute
  Item,         // operands: object, key
  Slice,        // operands: object, start, stop, step (each may be null)
  Call,         // operands: callee, positional arguments...; keywords
  Filter,       // operands: subject, arguments...; keywords; name, filter
  Test,         // operands: subject, arguments...; keywords; name, test, negated
  Negate,       // operands: x
  Plus,         // operands: x
  Not,          // operands: x
  And,          // operands: a, b
  Or,           // operands: a, b
  Binary,       // operands: a, b; op
  Compare,      // operands: a, b, c, ...; compare_ops between them (chained as in Python)
  Concat,       // operands: the parts joined by ~
  Conditional,  // operands: then, condition, else (may be null)
};

enum class BinaryOp : uint8_t { Add, Sub, Mul, Div, FloorDiv, Mod, Pow };
enum class CompareOp : uint8_t { Eq, Ne, Lt, Le, Gt, Ge, In, NotIn };

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Keyword {
  std::string name;
  ExprPtr value;
};

struct Expr {
  ExprKind kind = ExprKind::Literal;
  size_t offset = 0;
  int height = 1;  // of the tree below; bounded so evaluation cannot exhaust the stack
  Value value;
  std::string name;
  BinaryOp op = BinaryOp::Add;
  std::vector<CompareOp> compare_ops;
  std::vector<ExprPtr> operands;
  std::vector<Keyword> keywords;
  const FilterDef* filter = nullptr;  // null: no such filter (an error if evaluated)
  const TestDef* test = nullptr;
  bool negated = false;
};

// The left side of `set`, `for` and `with`: a name, `ns.attr`, or a tuple of targets.
struct Target {
  size_t offset = 0;
  std::string name;
  std::string attribute;  // non-empty for `{% set ns.attr = ... %}`
  bool is_tuple = false;
  std::vector<Target> items;
};

// One stage of `{% filter f(args) | g %}` or `{% set x | f %}`.
struct FilterCall {
  size_t offset = 0;
  std::string name;
  const FilterDef* filter = nullptr;
  std::vector<ExprPtr> args;
  std::vector<Keyword> keywords;
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

struct MacroDef {
  size_t offset = 0;
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // one per parameter; null where the caller must pass it
  Body body;
  bool uses_varargs = false, uses_kwargs = false;  // the body reads them: extra arguments are allowed
};

enum class NodeKind : uint8_t {
  Text,      // text
  Output,    // {{ expr }}
  If,        // branches, else_body
  For,       // target, expr (iterable), condition (may be null), body, else_body
  Set,       // target, expr
  SetBlock,  // target, filters, body
  Macro,     // macro
  Break,
  Continue,
  FilterBlock,  // filters, body
  With,         // assignments, body
  Scope,        // body: transformers' {% generation %}, rendered as is
};

struct Branch {
  ExprPtr condition;
  Body body;
};

struct Node {
  NodeKind kind = NodeKind::Text;
  size_t offset = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr condition;
  std::vector<Branch> branches;
  Body body, else_body;
  Target target;
  std::vector<FilterCall> filters;
  std::vector<std::pair<Target, ExprPtr>> assignments;
  std::shared_ptr<const MacroDef> macro;
};

struct Template {
  explicit Template(std::string_view source) : source(source) {}
  SourceText source;
  Body body;
};

}  // namespace anvil::chat::jinja
