#include "chat/jinja_eval.h"

#include <algorithm>
#include <cmath>

#include "chat/jinja_budget.h"
#include "chat/jinja_builtins.h"
#include "chat/jinja_ops.h"
#include "util/error.h"

namespace anvil::chat::jinja {

namespace {

// Recursion through eval/exec (and so through macro calls) stops here, well inside a default
// 8 MiB stack; the parser already bounds each expression's and block's own depth.
constexpr int kMaxDepth = 1000;

class MacroValue : public Callable {
 public:
  MacroValue(const MacroDef& def, std::weak_ptr<Frame> closure) : def_(def), closure_(std::move(closure)) {}
  Value call(Interpreter& in, CallArgs& args) const override { return in.call_macro(def_, closure_, args); }
  std::string repr() const override { return "<Macro '" + def_.name + "'>"; }
  bool is_macro() const override { return true; }

 private:
  const MacroDef& def_;  // owned by the template, which outlives every render
  // Weak: the macro is stored in the very frame it closes over.
  std::weak_ptr<Frame> closure_;
};

// <, <=, >, >= as Python evaluates them: with floats, through IEEE comparisons (NaN is unordered).
bool ordered(const Value& a, const Value& b, CompareOp op) {
  if (a.is_number() && b.is_number() && !(a.is_int_like() && b.is_int_like())) {
    const double x = a.as_float(), y = b.as_float();
    return op == CompareOp::Lt ? x < y : op == CompareOp::Le ? x <= y : op == CompareOp::Gt ? x > y : x >= y;
  }
  const char* sym = op == CompareOp::Lt ? "<" : op == CompareOp::Le ? "<=" : op == CompareOp::Gt ? ">" : ">=";
  const int c = compare(a, b, sym);
  return op == CompareOp::Lt ? c < 0 : op == CompareOp::Le ? c <= 0 : op == CompareOp::Gt ? c > 0 : c >= 0;
}

std::string too_large(const char* what, uint64_t limit) {
  return std::string(what) + " is larger than " + std::to_string(limit) + " bytes";
}

}  // namespace

const Value* Frame::find(std::string_view name) const {
  for (const auto& [k, v] : vars)
    if (k == name) return &v;
  return nullptr;
}

void Frame::set(std::string_view name, Value v) {
  for (auto& [k, old] : vars) {
    if (k == name) {
      old = std::move(v);
      return;
    }
  }
  vars.emplace_back(std::string(name), std::move(v));
}

Interpreter::Interpreter(const Template& tmpl, const std::string& where, const Limits& limits)
    : tmpl_(tmpl), where_(where), limits_(limits) {}

Interpreter::~Interpreter() {
  // A namespace can hold itself (`{% set ns.me = ns %}`); emptying every one frees such cycles.
  for (auto& ns : namespaces_) ns->attrs = Dict();
}

std::string Interpreter::render(std::vector<std::pair<std::string, Value>> variables) {
  budget_ = Budget{limits_.max_steps, limits_.max_bytes, 0, 0};
  const BudgetScope scope(budget_);
  root_ = std::make_shared<Frame>();
  root_->vars = std::move(variables);
  std::string out;
  exec(tmpl_.body, root_, out);
  return out;
}

void Interpreter::error_at(size_t offset, const std::string& what) const {
  fail(where_, tmpl_.source.at(offset) + ": " + what);
}

void Interpreter::spend_steps(int64_t n) { jinja::spend_steps(n); }

void Interpreter::spend_bytes(size_t n) {
  if (n > limits_.max_output) throw Failure(too_large("a string", limits_.max_output));
  jinja::spend_bytes(n);
}

std::shared_ptr<Namespace> Interpreter::new_namespace() {
  spend_steps(1);
  auto ns = std::make_shared<Namespace>();
  namespaces_.push_back(ns);
  return ns;
}

void Interpreter::append_output(std::string& out, std::string_view text) {
  if (out.size() + text.size() > limits_.max_output) throw Failure(too_large("the output", limits_.max_output));
  spend_bytes(text.size());
  out += text;
}

// ---------------------------------------------------------------------------------------------
// Statements

namespace {
struct DepthGuard {
  explicit DepthGuard(int& depth) : depth_(depth) {
    if (++depth_ > kMaxDepth) {
      --depth_;
      throw Failure("the template recurses deeper than " + std::to_string(kMaxDepth) + " levels");
    }
  }
  ~DepthGuard() { --depth_; }
  int& depth_;
};
}  // namespace

Interpreter::Flow Interpreter::exec(const Body& body, const FramePtr& frame, std::string& out) {
  for (const NodePtr& node : body) {
    const Flow flow = exec_node(*node, frame, out);
    if (flow != Flow::Normal) return flow;
  }
  return Flow::Normal;
}

Interpreter::Flow Interpreter::exec_node(const Node& node, const FramePtr& frame, std::string& out) {
  try {
    DepthGuard guard(depth_);
    switch (node.kind) {
      case NodeKind::Text: append_output(out, node.text); break;
      case NodeKind::Output: {
        const Value v = eval(*node.expr, frame);
        if (v.is_string()) {
          append_output(out, v.str());
        } else {
          std::string s;
          append_str(s, v, limits_.max_output);
          append_output(out, s);
        }
        break;
      }
      case NodeKind::If:
        for (const Branch& branch : node.branches)
          if (truthy(eval(*branch.condition, frame))) return exec(branch.body, frame, out);
        return exec(node.else_body, frame, out);
      case NodeKind::For: return exec_for(node, frame, out);
      case NodeKind::Set: assign(node.target, eval(*node.expr, frame), *frame); break;
      case NodeKind::SetBlock: {
        std::string body;
        exec(node.body, frame, body);
        assign(node.target, apply_filters(node.filters, Value::string(std::move(body)), frame), *frame);
        break;
      }
      case NodeKind::Macro:
        frame->set(node.macro->name, Value::callable(std::make_shared<MacroValue>(*node.macro, frame)));
        frame->captured = true;
        break;
      case NodeKind::Break: return Flow::Break;
      case NodeKind::Continue: return Flow::Continue;
      case NodeKind::FilterBlock: {
        std::string body;
        exec(node.body, frame, body);
        const Value v = apply_filters(node.filters, Value::string(std::move(body)), frame);
        std::string s;
        append_str(s, v, limits_.max_output);
        append_output(out, s);
        break;
      }
      case NodeKind::With: {
        auto inner = std::make_shared<Frame>(frame);
        for (const auto& [target, expr] : node.assignments) assign(target, eval(*expr, inner), *inner);
        return exec(node.body, inner, out);
      }
      case NodeKind::Scope: return exec(node.body, frame, out);
    }
  } catch (const Failure& f) {
    error_at(node.offset, f.what());
  }
  return Flow::Normal;
}

Interpreter::Flow Interpreter::exec_for(const Node& node, const FramePtr& frame, std::string& out) {
  Value items = iteration_list(*this, eval(*node.expr, frame));
  if (node.condition) {
    // The loop's `if` filters first, so loop.index and loop.length count what remains.
    std::vector<Value> kept;
    auto scratch = std::make_shared<Frame>(frame);
    for (const Value& item : items.list().items) {
      spend_steps(1);
      scratch->vars.clear();
      assign(node.target, item, *scratch);
      if (truthy(eval(*node.condition, scratch))) kept.push_back(item);
    }
    items = Value::list(std::move(kept));
  }
  const size_t n = items.list().items.size();
  if (n == 0) {
    auto inner = std::make_shared<Frame>(frame);
    return exec(node.else_body, inner, out);
  }
  auto state = std::make_shared<LoopState>();
  state->items = items;
  const Value loop = Value::loop(state);
  FramePtr inner;
  for (size_t i = 0; i < n; ++i) {
    spend_steps(1);
    // Each iteration starts from a fresh scope, as in jinja2; the last one's frame is reused
    // unless something still holds it or a macro defined in it closes over it.
    if (!inner || inner.use_count() > 1 || inner->captured) inner = std::make_shared<Frame>(frame);
    else inner->vars.clear();
    state->index0 = i;
    assign(node.target, items.list().items[i], *inner);
    inner->set("loop", loop);
    if (exec(node.body, inner, out) == Flow::Break) break;
  }
  state->last_changed = Value();  // it may hold the loop itself: `loop.changed(loop)`
  return Flow::Normal;
}

void Interpreter::assign(const Target& target, const Value& value, Frame& frame) {
  if (target.is_tuple) {
    const Value items = iteration_list(*this, value);
    const auto& list = items.list().items;
    const size_t want = target.items.size();
    if (list.size() > want) throw Failure("too many values to unpack (expected " + std::to_string(want) + ")");
    if (list.size() < want)
      throw Failure("not enough values to unpack (expected " + std::to_string(want) + ", got " +
                    std::to_string(list.size()) + ")");
    for (size_t i = 0; i < want; ++i) assign(target.items[i], list[i], frame);
    return;
  }
  if (!target.attribute.empty()) {
    const Value ns = lookup(target.name, frame);
    if (!ns.is(Value::Type::Namespace)) throw Failure("cannot assign attribute on non-namespace object");
    Namespace& n = ns.ns();
    n.depth = std::max(n.depth, nesting(value) + 1);
    if (n.depth > kMaxNesting) throw Failure("namespaces nest deeper than " + std::to_string(kMaxNesting) + " levels");
    n.attrs.insert(Value::string(target.attribute), value);
    return;
  }
  frame.set(target.name, value);
}

Value Interpreter::apply_filters(const std::vector<FilterCall>& filters, Value subject, const FramePtr& frame) {
  for (const FilterCall& f : filters) {
    CallArgs args = eval_args(f.args, f.keywords, frame);
    try {
      if (!f.filter) throw Failure("no filter named '" + f.name + "'");
      if (!f.filter->fn) throw Failure("the '" + f.name + "' filter is not supported");
      subject = f.filter->fn(*this, subject, args);
    } catch (const Failure& x) {
      error_at(f.offset, x.what());
    }
  }
  return subject;
}

// ---------------------------------------------------------------------------------------------
// Calls

Value Interpreter::call(const Value& callee, CallArgs& args) {
  if (callee.is_undefined()) throw Failure(callee.undefined_hint());
  if (!callee.is(Value::Type::Callable))
    throw Failure(std::string("'") + type_name(callee) + "' object is not callable");
  return callee.callable().call(*this, args);
}

Value Interpreter::filter(std::string_view name, const Value& subject, CallArgs& args) {
  const FilterDef* f = find_filter(name);
  if (!f) throw Failure("no filter named '" + std::string(name) + "'");
  if (!f->fn) throw Failure("the '" + std::string(name) + "' filter is not supported");
  return f->fn(*this, subject, args);
}

bool Interpreter::test(std::string_view name, const Value& subject, CallArgs& args) {
  const TestDef* t = find_test(name);
  if (!t) throw Failure("no test named '" + std::string(name) + "'");
  if (!t->fn) throw Failure("the '" + std::string(name) + "' test is not supported");
  return t->fn(*this, subject, args);
}

Value Interpreter::call_macro(const MacroDef& def, const std::weak_ptr<Frame>& closure, CallArgs& args) {
  if (macro_depth_ >= limits_.max_macro_depth)
    throw Failure("macro calls nest deeper than " + std::to_string(limits_.max_macro_depth) +
                  " levels (runaway recursion in '" + def.name + "'?)");
  FramePtr parent = closure.lock();
  auto frame = std::make_shared<Frame>(parent ? parent : root_);
  const size_t n = def.params.size();
  if (args.positional.size() > n && !def.uses_varargs)
    throw Failure("macro '" + def.name + "' takes not more than " + std::to_string(n) + " argument(s)");
  std::vector<bool> bound(n, false);
  for (size_t i = 0; i < n && i < args.positional.size(); ++i) {
    frame->set(def.params[i], args.positional[i]);
    bound[i] = true;
  }
  Dict extra;
  for (auto& [name, value] : args.keywords) {
    const auto it = std::find(def.params.begin(), def.params.end(), name);
    if (it == def.params.end()) {
      if (!def.uses_kwargs) throw Failure("macro '" + def.name + "' takes no keyword argument '" + name + "'");
      extra.insert(Value::string(name), value);
      continue;
    }
    const auto i = static_cast<size_t>(it - def.params.begin());
    if (bound[i]) throw Failure("macro '" + def.name + "' got multiple values for argument '" + name + "'");
    frame->set(name, value);
    bound[i] = true;
  }
  ++macro_depth_;
  struct Leave {
    int& depth;
    ~Leave() { --depth; }
  } leave{macro_depth_};
  for (size_t i = 0; i < n; ++i) {
    if (bound[i]) continue;
    // Defaults are evaluated per call, and may use the parameters before them.
    frame->set(def.params[i], def.defaults[i] ? eval(*def.defaults[i], frame)
                                              : Value::undefined("parameter '" + def.params[i] + "' was not provided"));
  }
  if (def.uses_varargs) {
    std::vector<Value> rest;
    for (size_t i = n; i < args.positional.size(); ++i) rest.push_back(args.positional[i]);
    frame->set("varargs", Value::list(std::move(rest), true));
  }
  if (def.uses_kwargs) frame->set("kwargs", Value::dict(std::move(extra)));
  std::string out;
  exec(def.body, frame, out);
  return Value::string(std::move(out));
}

// ---------------------------------------------------------------------------------------------
// Expressions

Value Interpreter::lookup(const std::string& name, const Frame& frame) const {
  for (const Frame* f = &frame; f; f = f->parent.get())
    if (const Value* v = f->find(name)) return *v;
  if (auto g = find_global(name)) return *g;
  return Value::undefined("'" + name + "' is undefined");
}

CallArgs Interpreter::eval_args(const std::vector<ExprPtr>& args, const std::vector<Keyword>& keywords,
                                const FramePtr& frame) {
  CallArgs out;
  out.positional.reserve(args.size());
  for (const auto& a : args) out.positional.push_back(eval(*a, frame));
  for (const auto& k : keywords) out.keywords.emplace_back(k.name, eval(*k.value, frame));
  return out;
}

CallArgs Interpreter::eval_args(const Expr& e, size_t first, const FramePtr& frame) {
  CallArgs out;
  for (size_t i = first; i < e.operands.size(); ++i) out.positional.push_back(eval(*e.operands[i], frame));
  for (const auto& k : e.keywords) out.keywords.emplace_back(k.name, eval(*k.value, frame));
  return out;
}

Value Interpreter::eval(const Expr& e, const FramePtr& frame) {
  // The innermost expression that fails gives the position; outer ones let anvil::Error pass.
  try {
    DepthGuard guard(depth_);
    return eval_node(e, frame);
  } catch (const Failure& f) {
    error_at(e.offset, f.what());
  }
}

Value Interpreter::eval_node(const Expr& e, const FramePtr& frame) {
  auto operand = [&](size_t i) { return e.operands[i] ? eval(*e.operands[i], frame) : Value(); };
  switch (e.kind) {
    case ExprKind::Literal: return e.value;
    case ExprKind::Name: return lookup(e.name, *frame);
    case ExprKind::List:
    case ExprKind::Tuple: {
      std::vector<Value> items;
      items.reserve(e.operands.size());
      for (const auto& op : e.operands) items.push_back(eval(*op, frame));
      spend_steps(static_cast<int64_t>(items.size()));
      return Value::list(std::move(items), e.kind == ExprKind::Tuple);
    }
    case ExprKind::Dict: {
      Dict d;
      for (size_t i = 0; i + 1 < e.operands.size(); i += 2) d.insert(operand(i), operand(i + 1));
      spend_steps(static_cast<int64_t>(d.size()));
      return Value::dict(std::move(d));
    }
    case ExprKind::Attribute: return get_attribute(operand(0), e.name);
    case ExprKind::Item: {
      const Value obj = operand(0);
      return get_item(obj, operand(1));
    }
    case ExprKind::Slice: {
      const Value obj = operand(0);
      const Value start = operand(1), stop = operand(2), step = operand(3);
      auto given = [&](size_t i, const Value& v) { return e.operands[i] ? &v : nullptr; };
      return slice(*this, obj, given(1, start), given(2, stop), given(3, step));
    }
    case ExprKind::Call: return eval_call(e, frame);
    case ExprKind::Filter: {
      const Value subject = operand(0);
      CallArgs args = eval_args(e, 1, frame);
      if (!e.filter) throw Failure("no filter named '" + e.name + "'");
      if (!e.filter->fn) throw Failure("the '" + e.name + "' filter is not supported");
      return e.filter->fn(*this, subject, args);
    }
    case ExprKind::Test: {
      const Value subject = operand(0);
      CallArgs args = eval_args(e, 1, frame);
      if (!e.test) throw Failure("no test named '" + e.name + "'");
      if (!e.test->fn) throw Failure("the '" + e.name + "' test is not supported");
      return Value::boolean(e.test->fn(*this, subject, args) != e.negated);
    }
    case ExprKind::Negate: return unary_minus(operand(0));
    case ExprKind::Plus: return unary_plus(operand(0));
    case ExprKind::Not: return Value::boolean(!truthy(operand(0)));
    case ExprKind::And: {
      Value a = operand(0);
      return truthy(a) ? operand(1) : a;
    }
    case ExprKind::Or: {
      Value a = operand(0);
      return truthy(a) ? a : operand(1);
    }
    case ExprKind::Binary: {
      const Value a = operand(0);
      return binary_op(*this, e.op, a, operand(1));
    }
    case ExprKind::Compare: {
      Value left = operand(0);
      for (size_t i = 0; i < e.compare_ops.size(); ++i) {
        Value right = operand(i + 1);
        bool ok = false;
        switch (e.compare_ops[i]) {
          case CompareOp::Eq: ok = equal(left, right); break;
          case CompareOp::Ne: ok = !equal(left, right); break;
          case CompareOp::Lt:
          case CompareOp::Le:
          case CompareOp::Gt:
          case CompareOp::Ge: ok = ordered(left, right, e.compare_ops[i]); break;
          case CompareOp::In: ok = contains(*this, right, left); break;
          case CompareOp::NotIn: ok = !contains(*this, right, left); break;
        }
        if (!ok) return Value::boolean(false);
        left = std::move(right);
      }
      return Value::boolean(true);
    }
    case ExprKind::Concat: {
      std::string s;
      for (const auto& op : e.operands) append_str(s, eval(*op, frame), limits_.max_output);
      spend_bytes(s.size());
      return Value::string(std::move(s));
    }
    case ExprKind::Conditional:
      if (truthy(operand(1))) return operand(0);
      if (e.operands[2]) return operand(2);
      return Value::undefined("the inline if-expression on " + tmpl_.source.at(e.offset) +
                              " evaluated to false and no else section was defined.");
  }
  return Value();
}

Value Interpreter::eval_call(const Expr& e, const FramePtr& frame) {
  const Value callee = eval(*e.operands[0], frame);
  CallArgs args = eval_args(e, 1, frame);
  return call(callee, args);
}

}  // namespace anvil::chat::jinja
