#pragma once
// The work one render may do. Every primitive that walks a string or a list charges it, however far
// below the interpreter it runs (comparing two strings, counting code points, searching), so that
// no sequence of operations on big values can run for minutes: a hostile template ends with an
// error instead. The budget is per thread, installed by the render running there.
#include <cstdint>

namespace anvil::chat::jinja {

struct Budget {
  int64_t max_steps = 0;   // loop iterations, plus items of lists built, compared or searched
  uint64_t max_bytes = 0;  // bytes of strings built, compared or scanned
  int64_t steps = 0;
  uint64_t bytes = 0;
};

// Makes `budget` the one charged on this thread while it lives.
class BudgetScope {
 public:
  explicit BudgetScope(Budget& budget);
  ~BudgetScope();
  BudgetScope(const BudgetScope&) = delete;
  BudgetScope& operator=(const BudgetScope&) = delete;

 private:
  Budget* previous_;
};

// Failure once the installed budget is spent; free when none is installed (outside a render).
void spend_steps(int64_t n);
void spend_bytes(uint64_t n);

}  // namespace anvil::chat::jinja
