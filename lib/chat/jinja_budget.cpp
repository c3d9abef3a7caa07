#include "chat/jinja_budget.h"

#include <string>

#include "chat/jinja_value.h"

namespace anvil::chat::jinja {

namespace {
thread_local Budget* t_budget = nullptr;
}  // namespace

BudgetScope::BudgetScope(Budget& budget) : previous_(t_budget) { t_budget = &budget; }
BudgetScope::~BudgetScope() { t_budget = previous_; }

void spend_steps(int64_t n) {
  if (!t_budget) return;
  t_budget->steps += n;
  if (t_budget->steps > t_budget->max_steps)
    throw Failure("the template runs more than " + std::to_string(t_budget->max_steps) +
                  " loop iterations and list items (a runaway loop?)");
}

void spend_bytes(uint64_t n) {
  if (!t_budget) return;
  t_budget->bytes += n;
  if (t_budget->bytes > t_budget->max_bytes)
    throw Failure("the template builds or scans more than " + std::to_string(t_budget->max_bytes) +
                  " bytes of strings");
}

}  // namespace anvil::chat::jinja
