#include "chat/jinja_parser.h"

#include <algorithm>
#include <initializer_list>

#include "chat/jinja_builtins.h"
#include "util/error.h"

namespace anvil::chat::jinja {

namespace {

// Bounds on the parse tree. Both parsing and evaluation recurse along it, and a hostile template
// (ten thousand parentheses, `1+1+...+1`, blocks nested a thousand deep) must get an error rather
// than overflow the stack. Real templates stay far below.
constexpr int kMaxExprHeight = 200;
constexpr int kMaxParseDepth = 200;
constexpr int kMaxBlockDepth = 100;

// Tags of jinja2 that transformers' environment knows but anvil does not implement.
constexpr std::string_view kUnsupportedTags[] = {"call", "include", "import", "from", "extends", "block", "autoescape"};

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

std::string one_of(const std::vector<std::string_view>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) out += i + 1 == names.size() ? " or " : ", ";
    out += quoted(names[i]);
  }
  return out;
}

class Parser {
 public:
  Parser(const Template& tmpl, std::vector<Token> tokens, const std::string& where)
      : tmpl_(tmpl), tokens_(std::move(tokens)), where_(where) {}

  Body parse() {
    std::string_view end;
    Body body = parse_body({}, end);
    return body;
  }

 private:
  // ------------------------------------------------------------------------------------------
  // Tokens

  const Token& cur() const { return tokens_[pos_]; }
  const Token& peek(size_t k = 1) const { return tokens_[std::min(pos_ + k, tokens_.size() - 1)]; }
  void advance() {
    if (pos_ + 1 < tokens_.size()) ++pos_;
  }

  bool at(TokenKind kind) const { return cur().kind == kind; }
  bool at_op(std::string_view op) const { return cur().kind == TokenKind::Operator && cur().text == op; }
  bool at_name(std::string_view name) const { return cur().kind == TokenKind::Name && cur().text == name; }
  bool skip_op(std::string_view op) {
    if (!at_op(op)) return false;
    advance();
    return true;
  }
  bool skip_name(std::string_view name) {
    if (!at_name(name)) return false;
    advance();
    return true;
  }

  static std::string describe(const Token& t) {
    switch (t.kind) {
      case TokenKind::Data: return "text";
      case TokenKind::VariableBegin: return "'{{'";
      case TokenKind::VariableEnd: return "'}}'";
      case TokenKind::BlockBegin: return "'{%'";
      case TokenKind::BlockEnd: return "'%}'";
      case TokenKind::Name:
      case TokenKind::Operator: return quoted(t.text);
      case TokenKind::Integer:
      case TokenKind::Float: return "a number";
      case TokenKind::String: return "a string";
      case TokenKind::End: return "end of template";
    }
    return "a token";
  }

  [[noreturn]] void error_at(size_t offset, const std::string& what) const {
    fail(where_, tmpl_.source.at(offset) + ": " + what);
  }
  [[noreturn]] void unexpected(const std::string& wanted = "") const {
    error_at(cur().offset, "unexpected " + describe(cur()) + (wanted.empty() ? "" : ", expected " + wanted));
  }
  void expect_op(std::string_view op) {
    if (!skip_op(op)) unexpected(quoted(op));
  }
  void expect_block_end() {
    if (!at(TokenKind::BlockEnd)) unexpected("'%}'");
    advance();
  }
  std::string expect_name(const char* what = "a name") {
    if (!at(TokenKind::Name)) unexpected(what);
    std::string name = cur().text;
    advance();
    return name;
  }

  struct DepthGuard {
    DepthGuard(Parser& p, int& depth, int limit, const char* what) : depth_(depth) {
      if (++depth_ > limit) p.error_at(p.cur().offset, std::string(what) + " nest too deeply");
    }
    ~DepthGuard() { --depth_; }
    int& depth_;
  };

  // ------------------------------------------------------------------------------------------
  // Statements

  struct OpenBlock {
    std::string_view tag;
    size_t offset;
    std::vector<std::string_view> ends;
  };

  // Parses until one of `ends` opens a tag (it is consumed; `found` names it) or, at the top
  // level, the end of the template.
  Body parse_body(std::vector<std::string_view> ends, std::string_view& found) {
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.kind == TokenKind::End) {
        if (!ends.empty()) {
          const OpenBlock& open = blocks_.back();
          error_at(open.offset, "unclosed '" + std::string(open.tag) + "' block: expected " + one_of(open.ends) +
                                    " before the end of the template");
        }
        return body;
      }
      if (t.kind == TokenKind::Data) {
        auto node = make_node(NodeKind::Text, t.offset);
        node->text = t.text;
        body.push_back(std::move(node));
        advance();
      } else if (t.kind == TokenKind::VariableBegin) {
        auto node = make_node(NodeKind::Output, t.offset);
        advance();
        node->expr = parse_tuple(true, {});
        if (!at(TokenKind::VariableEnd)) unexpected("'}}'");
        advance();
        body.push_back(std::move(node));
      } else if (t.kind == TokenKind::BlockBegin) {
        advance();
        if (cur().kind == TokenKind::Name) {
          const auto it = std::find(ends.begin(), ends.end(), std::string_view(cur().text));
          if (it != ends.end()) {
            found = *it;
            advance();
            return body;
          }
        }
        body.push_back(parse_statement(t.offset));
      } else {
        unexpected();
      }
    }
  }

  Body parse_block_body(std::string_view tag, size_t offset, std::vector<std::string_view> ends,
                        std::string_view& found) {
    DepthGuard guard(*this, block_depth_, kMaxBlockDepth, "blocks");
    blocks_.push_back(OpenBlock{tag, offset, ends});
    Body body = parse_body(std::move(ends), found);
    blocks_.pop_back();
    return body;
  }

  NodePtr make_node(NodeKind kind, size_t offset) {
    auto node = std::make_unique<Node>();
    node->kind = kind;
    node->offset = offset;
    return node;
  }

  NodePtr parse_statement(size_t offset) {
    if (!at(TokenKind::Name)) unexpected("a tag name");
    const std::string tag = cur().text;
    const size_t tag_offset = cur().offset;
    advance();
    if (tag == "if") return parse_if(offset);
    if (tag == "for") return parse_for(offset);
    if (tag == "set") return parse_set(offset);
    if (tag == "macro") return parse_macro(offset);
    if (tag == "filter") return parse_filter_block(offset);
    if (tag == "with") return parse_with(offset);
    if (tag == "generation") {
      auto node = make_node(NodeKind::Scope, offset);
      expect_block_end();
      std::string_view end;
      node->body = parse_block_body("generation", offset, {"endgeneration"}, end);
      expect_block_end();
      return node;
    }
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) error_at(tag_offset, "'" + tag + "' outside a for loop");
      auto node = make_node(tag == "break" ? NodeKind::Break : NodeKind::Continue, offset);
      expect_block_end();
      return node;
    }
    for (std::string_view unsupported : kUnsupportedTags)
      if (tag == unsupported) error_at(tag_offset, "the '" + tag + "' tag is not supported");
    for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) {
      if (std::find(it->ends.begin(), it->ends.end(), std::string_view(tag)) != it->ends.end()) {
        const OpenBlock& inner = blocks_.back();
        error_at(tag_offset, "unexpected '" + tag + "': the innermost open block is '" + std::string(inner.tag) +
                                 "' (" + tmpl_.source.at(inner.offset) + "), which needs " + one_of(inner.ends));
      }
    }
    error_at(tag_offset, "unknown tag '" + tag + "'");
  }

  NodePtr parse_if(size_t offset) {
    auto node = make_node(NodeKind::If, offset);
    ++soft_;  // unknown filters and tests under an `if` are errors only when evaluated
    ExprPtr condition = parse_expression(true);
    expect_block_end();
    while (true) {
      std::string_view end;
      Body body = parse_block_body("if", offset, {"elif", "else", "endif"}, end);
      node->branches.push_back(Branch{std::move(condition), std::move(body)});
      if (end == "elif") {
        condition = parse_expression(true);
        expect_block_end();
        continue;
      }
      expect_block_end();
      if (end == "else") {
        node->else_body = parse_block_body("if", offset, {"endif"}, end);
        expect_block_end();
      }
      break;
    }
    --soft_;
    return node;
  }

  NodePtr parse_for(size_t offset) {
    auto node = make_node(NodeKind::For, offset);
    node->target = parse_target(false, "in");
    if (!skip_name("in")) unexpected("'in'");
    node->expr = parse_tuple(false, {"if", "recursive"});
    if (skip_name("if")) node->condition = parse_expression(true);
    if (at_name("recursive")) error_at(cur().offset, "recursive for loops are not supported");
    expect_block_end();
    const int saved_soft = std::exchange(soft_, 0);
    std::string_view end;
    ++loop_depth_;
    node->body = parse_block_body("for", offset, {"else", "endfor"}, end);
    --loop_depth_;
    expect_block_end();
    if (end == "else") {
      const int saved_loops = std::exchange(loop_depth_, 0);  // `else` runs after the loop
      node->else_body = parse_block_body("for", offset, {"endfor"}, end);
      loop_depth_ = saved_loops;
      expect_block_end();
    }
    soft_ = saved_soft;
    return node;
  }

  NodePtr parse_set(size_t offset) {
    Target target = parse_target(true, "");
    if (skip_op("=")) {
      auto node = make_node(NodeKind::Set, offset);
      node->target = std::move(target);
      node->expr = parse_tuple(true, {});
      expect_block_end();
      return node;
    }
    if (target.is_tuple) unexpected("'='");
    auto node = make_node(NodeKind::SetBlock, offset);
    node->target = std::move(target);
    while (skip_op("|")) node->filters.push_back(parse_filter_call());
    expect_block_end();
    std::string_view end;
    node->body = parse_block_body("set", offset, {"endset"}, end);
    expect_block_end();
    return node;
  }

  NodePtr parse_macro(size_t offset) {
    auto def = std::make_shared<MacroDef>();
    def->offset = offset;
    def->name = expect_name("the macro's name");
    expect_op("(");
    while (!at_op(")")) {
      if (!def->params.empty()) expect_op(",");
      if (at_op(")")) break;
      const size_t param_offset = cur().offset;
      std::string param = expect_name("a parameter name");
      if (std::find(def->params.begin(), def->params.end(), param) != def->params.end())
        error_at(param_offset, "duplicate argument '" + param + "' in macro '" + def->name + "'");
      def->params.push_back(std::move(param));
      if (skip_op("=")) def->defaults.push_back(parse_expression(true));
      else if (!def->defaults.empty() && def->defaults.back())
        error_at(param_offset, "non-default argument follows default argument");
      else def->defaults.push_back(nullptr);
    }
    advance();
    expect_block_end();
    const int saved_soft = std::exchange(soft_, 0);
    const int saved_loops = std::exchange(loop_depth_, 0);
    macros_.push_back(def.get());
    std::string_view end;
    def->body = parse_block_body("macro", offset, {"endmacro"}, end);
    macros_.pop_back();
    soft_ = saved_soft;
    loop_depth_ = saved_loops;
    expect_block_end();
    auto node = make_node(NodeKind::Macro, offset);
    node->macro = std::move(def);
    return node;
  }

  NodePtr parse_filter_block(size_t offset) {
    auto node = make_node(NodeKind::FilterBlock, offset);
    do node->filters.push_back(parse_filter_call());
    while (skip_op("|"));
    expect_block_end();
    std::string_view end;
    node->body = parse_block_body("filter", offset, {"endfilter"}, end);
    expect_block_end();
    return node;
  }

  NodePtr parse_with(size_t offset) {
    auto node = make_node(NodeKind::With, offset);
    while (!at(TokenKind::BlockEnd)) {
      if (!node->assignments.empty()) expect_op(",");
      Target target = parse_target(false, "");
      expect_op("=");
      node->assignments.emplace_back(std::move(target), parse_expression(true));
    }
    advance();
    std::string_view end;
    node->body = parse_block_body("with", offset, {"endwith"}, end);
    expect_block_end();
    return node;
  }

  // `a`, `a, b`, `(a, b), c`, and for `set` also `ns.attr`. `stop` ends the list (the `in` of a for).
  Target parse_target(bool allow_attribute, std::string_view stop) {
    Target first = parse_target_item(allow_attribute);
    if (!at_op(",")) return first;
    Target tuple;
    tuple.offset = first.offset;
    tuple.is_tuple = true;
    tuple.items.push_back(std::move(first));
    while (skip_op(",")) {
      if ((!stop.empty() && at_name(stop)) || at_op("=") || at(TokenKind::BlockEnd)) break;
      tuple.items.push_back(parse_target_item(allow_attribute));
    }
    return tuple;
  }

  Target parse_target_item(bool allow_attribute) {
    if (skip_op("(")) {
      Target inner = parse_target(allow_attribute, "");
      expect_op(")");
      return inner;
    }
    Target t;
    t.offset = cur().offset;
    t.name = expect_name("a variable name");
    static constexpr std::string_view constants[] = {"true", "false", "none", "True", "False", "None"};
    for (std::string_view c : constants)
      if (t.name == c) error_at(t.offset, "cannot assign to '" + t.name + "'");
    if (allow_attribute && skip_op(".")) t.attribute = expect_name("an attribute name");
    return t;
  }

  FilterCall parse_filter_call() {
    FilterCall call;
    call.offset = cur().offset;
    call.name = expect_name("a filter name");
    call.filter = resolve_filter(call.name, call.offset);
    if (at_op("(")) parse_call_args(call.args, call.keywords);
    return call;
  }

  const FilterDef* resolve_filter(const std::string& name, size_t offset) {
    const FilterDef* f = find_filter(name);
    if (!f && soft_ == 0) error_at(offset, "no filter named '" + name + "'");
    return f;
  }

  // ------------------------------------------------------------------------------------------
  // Expressions, loosest binding first: conditional, or, and, not, comparisons, + -, ~,
  // * / // %, **, unary - +, then primaries with their postfixes, filters and tests.

  ExprPtr make(ExprKind kind, size_t offset) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->offset = offset;
    return e;
  }

  ExprPtr finish(ExprPtr e) {
    int h = 0;
    for (const auto& op : e->operands)
      if (op) h = std::max(h, op->height);
    for (const auto& kw : e->keywords) h = std::max(h, kw.value->height);
    e->height = h + 1;
    if (e->height > kMaxExprHeight) error_at(e->offset, "the expression nests too deeply");
    return e;
  }

  ExprPtr binary(ExprKind kind, size_t offset, ExprPtr a, ExprPtr b) {
    auto e = make(kind, offset);
    e->operands.push_back(std::move(a));
    e->operands.push_back(std::move(b));
    return finish(std::move(e));
  }

  bool tuple_end(const std::vector<std::string_view>& extra_ends) const {
    if (at(TokenKind::VariableEnd) || at(TokenKind::BlockEnd) || at_op(")")) return true;
    if (cur().kind == TokenKind::Name)
      for (std::string_view end : extra_ends)
        if (cur().text == end) return true;
    return false;
  }

  // `a, b` without parentheses is a tuple where jinja2 allows it: in {{ }}, `set` values, `for`
  // iterables and inside parentheses.
  ExprPtr parse_tuple(bool with_conditional, const std::vector<std::string_view>& extra_ends,
                      bool parenthesized = false) {
    const size_t offset = cur().offset;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (tuple_end(extra_ends)) break;
      items.push_back(parse_expression(with_conditional));
      if (at_op(",")) is_tuple = true;
      else break;
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!parenthesized) unexpected("an expression");
    }
    auto e = make(ExprKind::Tuple, offset);
    e->operands = std::move(items);
    return finish(std::move(e));
  }

  ExprPtr parse_expression(bool with_conditional) {
    DepthGuard guard(*this, depth_, kMaxParseDepth, "expressions");
    if (!with_conditional) return parse_or();
    const size_t offset = cur().offset;
    ExprPtr e = parse_or();
    while (skip_name("if")) {
      auto cond = make(ExprKind::Conditional, offset);
      ++soft_;
      ExprPtr test = parse_or();
      ExprPtr otherwise = skip_name("else") ? parse_expression(true) : nullptr;
      --soft_;
      cond->operands.push_back(std::move(e));
      cond->operands.push_back(std::move(test));
      cond->operands.push_back(std::move(otherwise));
      e = finish(std::move(cond));
    }
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (at_name("or")) {
      const size_t offset = cur().offset;
      advance();
      e = binary(ExprKind::Or, offset, std::move(e), parse_and());
    }
    return e;
  }

  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (at_name("and")) {
      const size_t offset = cur().offset;
      advance();
      e = binary(ExprKind::And, offset, std::move(e), parse_not());
    }
    return e;
  }

  ExprPtr parse_not() {
    if (!at_name("not")) return parse_compare();
    DepthGuard guard(*this, depth_, kMaxParseDepth, "expressions");
    auto e = make(ExprKind::Not, cur().offset);
    advance();
    e->operands.push_back(parse_not());
    return finish(std::move(e));
  }

  ExprPtr parse_compare() {
    const size_t offset = cur().offset;
    ExprPtr first = parse_math1();
    ExprPtr e;
    while (true) {
      CompareOp op;
      if (at(TokenKind::Operator) && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                      cur().text == "<=" || cur().text == ">" || cur().text == ">=")) {
        const std::string& t = cur().text;
        op = t == "=="   ? CompareOp::Eq
             : t == "!=" ? CompareOp::Ne
             : t == "<"  ? CompareOp::Lt
             : t == "<=" ? CompareOp::Le
             : t == ">"  ? CompareOp::Gt
                         : CompareOp::Ge;
        advance();
      } else if (at_name("in")) {
        op = CompareOp::In;
        advance();
      } else if (at_name("not") && peek().kind == TokenKind::Name && peek().text == "in") {
        op = CompareOp::NotIn;
        advance();
        advance();
      } else {
        break;
      }
      if (!e) {
        e = make(ExprKind::Compare, offset);
        e->operands.push_back(std::move(first));
      }
      e->compare_ops.push_back(op);
      e->operands.push_back(parse_math1());
    }
    return e ? finish(std::move(e)) : std::move(first);
  }

  ExprPtr parse_binary_level(ExprPtr (Parser::*next)(), std::initializer_list<std::pair<const char*, BinaryOp>> ops) {
    ExprPtr e = (this->*next)();
    while (cur().kind == TokenKind::Operator) {
      const auto it = std::find_if(ops.begin(), ops.end(), [&](const auto& o) { return cur().text == o.first; });
      if (it == ops.end()) break;
      const size_t offset = cur().offset;
      advance();
      auto b = binary(ExprKind::Binary, offset, std::move(e), (this->*next)());
      b->op = it->second;
      e = std::move(b);
    }
    return e;
  }

  ExprPtr parse_math1() {
    return parse_binary_level(&Parser::parse_concat, {{"+", BinaryOp::Add}, {"-", BinaryOp::Sub}});
  }

  ExprPtr parse_concat() {
    const size_t offset = cur().offset;
    ExprPtr first = parse_math2();
    if (!at_op("~")) return first;
    auto e = make(ExprKind::Concat, offset);
    e->operands.push_back(std::move(first));
    while (skip_op("~")) e->operands.push_back(parse_math2());
    return finish(std::move(e));
  }

  ExprPtr parse_math2() {
    return parse_binary_level(
        &Parser::parse_pow,
        {{"*", BinaryOp::Mul}, {"/", BinaryOp::Div}, {"//", BinaryOp::FloorDiv}, {"%", BinaryOp::Mod}});
  }

  ExprPtr parse_pow() { return parse_binary_level(&Parser::parse_unary_filtered, {{"**", BinaryOp::Pow}}); }

  ExprPtr parse_unary_filtered() { return parse_unary(true); }

  // jinja2 binds unary minus tighter than filters and **: `-x|abs` is `(-x)|abs`, `-2**2` is 4.
  ExprPtr parse_unary(bool with_filters) {
    DepthGuard guard(*this, depth_, kMaxParseDepth, "expressions");
    ExprPtr e;
    if (at_op("-") || at_op("+")) {
      e = make(at_op("-") ? ExprKind::Negate : ExprKind::Plus, cur().offset);
      advance();
      e->operands.push_back(parse_unary(false));
      e = finish(std::move(e));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filters) e = parse_filters_and_tests(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    const size_t offset = t.offset;
    switch (t.kind) {
      case TokenKind::Name: {
        auto e = make(ExprKind::Literal, offset);
        if (t.text == "true" || t.text == "True") e->value = Value::boolean(true);
        else if (t.text == "false" || t.text == "False") e->value = Value::boolean(false);
        else if (t.text == "none" || t.text == "None") e->value = Value::none();
        else {
          e->kind = ExprKind::Name;
          e->name = t.text;
          if (!macros_.empty() && t.text == "varargs") macros_.back()->uses_varargs = true;
          if (!macros_.empty() && t.text == "kwargs") macros_.back()->uses_kwargs = true;
        }
        advance();
        return e;
      }
      case TokenKind::String: {
        std::string s;
        while (at(TokenKind::String)) {  // adjacent literals concatenate
          s += cur().text;
          advance();
        }
        auto e = make(ExprKind::Literal, offset);
        e->value = Value::string(std::move(s));
        return e;
      }
      case TokenKind::Integer:
      case TokenKind::Float: {
        auto e = make(ExprKind::Literal, offset);
        e->value = t.kind == TokenKind::Integer ? Value::integer(t.integer) : Value::number(t.number);
        advance();
        return e;
      }
      case TokenKind::Operator:
        if (t.text == "(") {
          advance();
          ExprPtr e = parse_tuple(true, {}, true);
          expect_op(")");
          return e;
        }
        if (t.text == "[") return parse_list();
        if (t.text == "{") return parse_dict();
        break;
      default: break;
    }
    unexpected("an expression");
  }

  ExprPtr parse_list() {
    auto e = make(ExprKind::List, cur().offset);
    advance();
    while (!at_op("]")) {
      if (!e->operands.empty()) expect_op(",");
      if (at_op("]")) break;
      e->operands.push_back(parse_expression(true));
    }
    advance();
    return finish(std::move(e));
  }

  ExprPtr parse_dict() {
    auto e = make(ExprKind::Dict, cur().offset);
    advance();
    while (!at_op("}")) {
      if (!e->operands.empty()) expect_op(",");
      if (at_op("}")) break;
      e->operands.push_back(parse_expression(true));
      expect_op(":");
      e->operands.push_back(parse_expression(true));
    }
    advance();
    return finish(std::move(e));
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (at_op(".")) {
        const size_t offset = cur().offset;
        advance();
        if (at(TokenKind::Name)) {
          auto a = make(ExprKind::Attribute, offset);
          a->name = cur().text;
          advance();
          a->operands.push_back(std::move(e));
          e = finish(std::move(a));
        } else if (at(TokenKind::Integer)) {  // `x.0` is `x[0]`
          auto key = make(ExprKind::Literal, cur().offset);
          key->value = Value::integer(cur().integer);
          advance();
          e = binary(ExprKind::Item, offset, std::move(e), std::move(key));
        } else {
          unexpected("an attribute name");
        }
      } else if (at_op("[")) {
        e = parse_subscript(std::move(e));
      } else if (at_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  // `[key]`, `[a, b]` (a tuple key) or a slice `[start:stop:step]`, any part optional.
  ExprPtr parse_subscript(ExprPtr object) {
    const size_t offset = cur().offset;
    advance();
    std::vector<ExprPtr> keys;
    do {
      if (at_op("]") && !keys.empty()) break;
      ExprPtr start;
      if (!at_op(":")) {
        start = parse_expression(true);
        if (!at_op(":")) {
          keys.push_back(std::move(start));
          continue;
        }
      }
      if (!keys.empty()) error_at(cur().offset, "slices in a tuple of subscripts are not supported");
      advance();
      ExprPtr stop, step;
      if (!at_op("]") && !at_op(":")) stop = parse_expression(true);
      if (skip_op(":") && !at_op("]")) step = parse_expression(true);
      expect_op("]");
      auto e = make(ExprKind::Slice, offset);
      e->operands.push_back(std::move(object));
      e->operands.push_back(std::move(start));
      e->operands.push_back(std::move(stop));
      e->operands.push_back(std::move(step));
      return finish(std::move(e));
    } while (skip_op(","));
    expect_op("]");
    ExprPtr key;
    if (keys.size() == 1) {
      key = std::move(keys[0]);
    } else {
      key = make(ExprKind::Tuple, offset);
      key->operands = std::move(keys);
      key = finish(std::move(key));
    }
    return binary(ExprKind::Item, offset, std::move(object), std::move(key));
  }

  void parse_call_args(std::vector<ExprPtr>& args, std::vector<Keyword>& keywords) {
    const size_t open = cur().offset;
    expect_op("(");
    while (!at_op(")")) {
      if (!args.empty() || !keywords.empty()) {
        expect_op(",");
        if (at_op(")")) break;
      }
      if (at_op("*") || at_op("**")) error_at(cur().offset, "*args and **kwargs in calls are not supported");
      if (at(TokenKind::Name) && peek().kind == TokenKind::Operator && peek().text == "=") {
        std::string name = cur().text;
        advance();
        advance();
        keywords.push_back(Keyword{std::move(name), parse_expression(true)});
      } else {
        if (!keywords.empty()) error_at(cur().offset, "a positional argument follows keyword arguments");
        args.push_back(parse_expression(true));
      }
      if (at(TokenKind::End)) error_at(open, "unclosed '('");
    }
    advance();
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto e = make(ExprKind::Call, cur().offset);
    e->operands.push_back(std::move(callee));
    std::vector<ExprPtr> args;
    parse_call_args(args, e->keywords);
    for (auto& a : args) e->operands.push_back(std::move(a));
    return finish(std::move(e));
  }

  ExprPtr parse_filters_and_tests(ExprPtr e) {
    while (true) {
      if (at_op("|")) {
        advance();
        auto f = make(ExprKind::Filter, cur().offset);
        f->name = expect_name("a filter name");
        f->filter = resolve_filter(f->name, f->offset);
        f->operands.push_back(std::move(e));
        if (at_op("(")) {
          std::vector<ExprPtr> args;
          parse_call_args(args, f->keywords);
          for (auto& a : args) f->operands.push_back(std::move(a));
        }
        e = finish(std::move(f));
      } else if (at_name("is")) {
        e = parse_test(std::move(e));
      } else if (at_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_test(ExprPtr subject) {
    auto t = make(ExprKind::Test, cur().offset);
    advance();
    t->negated = skip_name("not");
    const size_t name_offset = cur().offset;
    // `is none`, `is true`, ...: those names are tests here, not constants.
    t->name = expect_name("a test name");
    t->test = find_test(t->name);
    if (!t->test && soft_ == 0) error_at(name_offset, "no test named '" + t->name + "'");
    t->operands.push_back(std::move(subject));
    if (at_op("(")) {
      std::vector<ExprPtr> args;
      parse_call_args(args, t->keywords);
      for (auto& a : args) t->operands.push_back(std::move(a));
    } else if ((at(TokenKind::Name) && !at_name("else") && !at_name("or") && !at_name("and")) ||
               at(TokenKind::String) || at(TokenKind::Integer) || at(TokenKind::Float) || at_op("[") || at_op("{")) {
      // `x is divisibleby 3`, `x is equalto 'a'`: one argument without parentheses.
      if (at_name("is")) error_at(cur().offset, "tests cannot be chained with 'is'");
      t->operands.push_back(parse_postfix(parse_primary()));
    }
    return finish(std::move(t));
  }

  const Template& tmpl_;
  std::vector<Token> tokens_;
  const std::string& where_;
  size_t pos_ = 0;
  int soft_ = 0;        // inside an `if` condition or branch, or a conditional expression
  int loop_depth_ = 0;  // enclosing for loops in the current macro
  int depth_ = 0, block_depth_ = 0;
  std::vector<OpenBlock> blocks_;
  std::vector<MacroDef*> macros_;
};

}  // namespace

std::shared_ptr<const Template> parse_template(std::string_view source, const std::string& where) {
  auto tmpl = std::make_shared<Template>(source);
  tmpl->body = Parser(*tmpl, tokenize(tmpl->source, where), where).parse();
  return tmpl;
}

}  // namespace anvil::chat::jinja
