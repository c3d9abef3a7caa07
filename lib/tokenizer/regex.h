#pragma once
// Unicode-aware regular expression (PCRE2, UTF + UCP, JIT) for pre-tokenizer Split patterns.
// \p{L}, \p{N}, \s and lookahead behave as in the tokenizers library's Oniguruma engine.
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace anvil::tokenizer {

class Regex {
 public:
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  // [begin, end) byte ranges of every non-overlapping match, left to right. `text` must be
  // valid UTF-8 (the tokenizer checks once up front).
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace anvil::tokenizer
