#pragma once
// Added tokens (specials such as <s>, <|im_end|>, and user-defined ones) are found in the text
// before anything else, leftmost-longest, with their single_word / lstrip / rstrip rules, exactly
// as the tokenizers library's AddedVocabulary does.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace anvil::tokenizer {

struct AddedToken {
  int32_t id;
  std::string content;
  bool special, lstrip, rstrip, normalized, single_word;
};

// One stretch of a text: [begin, end) and the added token it is, or -1 for ordinary text.
struct Segment {
  size_t begin, end;
  int32_t id;
};

class AddedTokenMatcher {
 public:
  // `patterns[i]` is the text that stands for `tokens[i]` (its content, or its content as the
  // normalizer rewrites it, for tokens matched after normalization).
  AddedTokenMatcher(std::vector<const AddedToken*> tokens, std::vector<std::string> patterns);
  AddedTokenMatcher() = default;

  bool empty() const { return entries_.empty(); }
  // The whole of `text` as segments, in order.
  std::vector<Segment> split(std::string_view text) const;

 private:
  struct Entry {
    const AddedToken* token;
    std::string pattern;
  };
  // A byte trie over the patterns: the longest match at a position is one walk, however many
  // tokens share a prefix (Gemma-3 has 6,322 added tokens beginning with '<').
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;  // sorted by byte
    int32_t entry = -1;                                 // the pattern ending here
  };
  int32_t child(int32_t node, uint8_t byte) const;
  const Entry* longest_match(std::string_view text, size_t pos) const;
  std::vector<Entry> entries_;
  std::vector<Node> nodes_;  // nodes_[0] is the root
};

}  // namespace anvil::tokenizer
