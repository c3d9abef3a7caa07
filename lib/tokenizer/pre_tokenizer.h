#pragma once
// tokenizer.json's "pre_tokenizer": splits normalized text into the pieces BPE merges within
// (Split with a regex or a literal and each of the library's delimiter behaviours, ByteLevel,
// Metaspace, Digits, Sequence).
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace anvil::util {
class JsonFields;
}

namespace anvil::tokenizer {

// Metaspace's prepend_scheme (pre-tokenizer and decoder alike).
enum class PrependScheme { First, Always, Never };
// From "prepend_scheme" or the older "add_prefix_space", with the library's rule that the two
// must agree.
PrependScheme parse_prepend_scheme(const util::JsonFields& fields);

struct Piece {
  std::string text;
  bool at_origin;  // begins at byte 0 of the caller's input (Metaspace's prepend_scheme "first")
};

class PreTokenizer {
 public:
  // `spec` is the "pre_tokenizer" value (null: the text is one piece).
  static PreTokenizer parse(const nlohmann::json& spec, const std::string& where);
  PreTokenizer();
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  // Refines `pieces` in place by every step, in order; empty pieces are dropped.
  void split(std::vector<Piece>& pieces) const;

  bool byte_level() const { return byte_level_; }
  // The Split regexes in order (GPT-2's ByteLevel pattern excluded), for naming it in GGUF.
  const std::vector<std::string>& split_patterns() const { return split_patterns_; }
  // A Metaspace step with prepend_scheme "first": U+2581 goes before the text only, not after
  // added tokens.
  bool metaspace_first() const { return metaspace_first_; }

 private:
  struct Step;
  std::vector<std::unique_ptr<Step>> steps_;
  bool byte_level_ = false;
  std::vector<std::string> split_patterns_;
  bool metaspace_first_ = false;
};

// How a Split treats what its pattern matches (the tokenizers library's SplitDelimiterBehavior).
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

// The library's split of `length` bytes given the pattern's matches ([begin, end) ranges, in
// order): pieces as [begin, end) ranges, empty ones dropped.
std::vector<std::pair<size_t, size_t>> split_ranges(size_t length, const std::vector<std::pair<size_t, size_t>>& matches,
                                                    SplitBehavior behavior, bool invert);

}  // namespace anvil::tokenizer
