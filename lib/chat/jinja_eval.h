#pragma once
// Renders a parsed template: scopes, statements, expressions and macro calls, with jinja2's
// scoping (a for loop's body gets a fresh scope each iteration; `if` gets none) and with bounds
// on everything a hostile template could make unbounded: loop iterations and items built, bytes
// built, output size, and recursion.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chat/jinja_ast.h"
#include "chat/jinja_budget.h"
#include "chat/jinja_value.h"

namespace anvil::chat::jinja {

struct Limits {
  int64_t max_steps = 10'000'000;     // loop iterations, plus items of lists built, compared or searched
  size_t max_output = 64u << 20;      // bytes of output, and of any one string
  uint64_t max_bytes = 512ull << 20;  // bytes of strings built, compared or scanned, output included
  int max_macro_depth = 100;          // nested macro calls
};

// raise_exception(msg): not a Failure, so nothing on the way out mistakes it for one.
struct Raised {
  std::string message;
};

struct Frame {
  explicit Frame(std::shared_ptr<Frame> parent = nullptr) : parent(std::move(parent)) {}
  const Value* find(std::string_view name) const;
  void set(std::string_view name, Value v);

  std::shared_ptr<Frame> parent;
  std::vector<std::pair<std::string, Value>> vars;
  bool captured = false;  // a macro defined here closes over this frame
};
using FramePtr = std::shared_ptr<Frame>;

class Interpreter {
 public:
  Interpreter(const Template& tmpl, const std::string& where, const Limits& limits);
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  // Runtime errors are anvil::Error(where, "line L, column C: ..."); raise_exception is Raised.
  std::string render(std::vector<std::pair<std::string, Value>> variables);

  // For the builtins: charge the render's Budget; a Failure when a limit is crossed.
  void spend_steps(int64_t n);
  void spend_bytes(size_t n);  // n bytes are about to be built (more than max_output is refused)
  const Limits& limits() const { return limits_; }
  Value call(const Value& callee, CallArgs& args);
  Value filter(std::string_view name, const Value& subject, CallArgs& args);  // map('upper')
  bool test(std::string_view name, const Value& subject, CallArgs& args);     // select('odd')
  std::shared_ptr<Namespace> new_namespace();
  Value call_macro(const MacroDef& def, const std::weak_ptr<Frame>& closure, CallArgs& args);

 private:
  enum class Flow { Normal, Break, Continue };

  [[noreturn]] void error_at(size_t offset, const std::string& what) const;
  Flow exec(const Body& body, const FramePtr& frame, std::string& out);
  Flow exec_node(const Node& node, const FramePtr& frame, std::string& out);
  Flow exec_for(const Node& node, const FramePtr& frame, std::string& out);
  void assign(const Target& target, const Value& value, Frame& frame);
  Value apply_filters(const std::vector<FilterCall>& filters, Value subject, const FramePtr& frame);
  void append_output(std::string& out, std::string_view text);

  Value eval(const Expr& e, const FramePtr& frame);
  Value eval_node(const Expr& e, const FramePtr& frame);
  Value eval_call(const Expr& e, const FramePtr& frame);
  CallArgs eval_args(const Expr& e, size_t first, const FramePtr& frame);
  CallArgs eval_args(const std::vector<ExprPtr>& args, const std::vector<Keyword>& keywords, const FramePtr& frame);
  Value lookup(const std::string& name, const Frame& frame) const;

  const Template& tmpl_;
  const std::string& where_;
  Limits limits_;
  Budget budget_;
  int depth_ = 0, macro_depth_ = 0;
  FramePtr root_;
  std::vector<std::shared_ptr<Namespace>> namespaces_;  // emptied at the end to break any cycles
};

}  // namespace anvil::chat::jinja
