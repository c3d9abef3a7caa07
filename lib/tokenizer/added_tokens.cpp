#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "tokenizer/utf8.h"

namespace anvil::tokenizer {
namespace {

// The code point that ends at `end` (the start of a UTF-8 sequence is found by walking back).
uint32_t code_point_before(std::string_view s, size_t end) {
  size_t start = end - 1;
  while (start > 0 && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
  size_t pos = start;
  const int32_t cp = next_code_point(s, pos);
  return cp < 0 ? 0xFFFD : static_cast<uint32_t>(cp);
}

uint32_t code_point_at(std::string_view s, size_t at, size_t* next) {
  size_t pos = at;
  const int32_t cp = next_code_point(s, pos);
  if (next) *next = pos;
  return cp < 0 ? 0xFFFD : static_cast<uint32_t>(cp);
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<const AddedToken*> tokens, std::vector<std::string> patterns) {
  for (size_t i = 0; i < tokens.size(); ++i)
    if (!patterns[i].empty()) entries_.push_back({tokens[i], std::move(patterns[i])});
  nodes_.emplace_back();
  for (size_t e = 0; e < entries_.size(); ++e) {
    int32_t node = 0;
    for (unsigned char byte : entries_[e].pattern) {
      int32_t next = child(node, byte);
      if (next < 0) {
        next = static_cast<int32_t>(nodes_.size());
        auto& children = nodes_[static_cast<size_t>(node)].children;
        children.insert(std::lower_bound(children.begin(), children.end(), std::pair<uint8_t, int32_t>(byte, -1)),
                        {byte, next});
        nodes_.emplace_back();
      }
      node = next;
    }
    // Two tokens with the same text: the first listed wins (the library keeps one per text).
    if (nodes_[static_cast<size_t>(node)].entry < 0) nodes_[static_cast<size_t>(node)].entry = static_cast<int32_t>(e);
  }
}

int32_t AddedTokenMatcher::child(int32_t node, uint8_t byte) const {
  const auto& children = nodes_[static_cast<size_t>(node)].children;
  auto it = std::lower_bound(children.begin(), children.end(), std::pair<uint8_t, int32_t>(byte, -1));
  return it != children.end() && it->first == byte ? it->second : -1;
}

const AddedTokenMatcher::Entry* AddedTokenMatcher::longest_match(std::string_view text, size_t pos) const {
  const Entry* best = nullptr;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    node = child(node, static_cast<uint8_t>(text[i]));
    if (node < 0) break;
    if (const int32_t e = nodes_[static_cast<size_t>(node)].entry; e >= 0) best = &entries_[static_cast<size_t>(e)];
  }
  return best;
}

std::vector<Segment> AddedTokenMatcher::split(std::string_view text) const {
  std::vector<Segment> out;
  size_t emitted = 0;  // end of what the segments cover so far
  size_t pos = 0;
  while (pos < text.size()) {
    const Entry* hit = entries_.empty() ? nullptr : longest_match(text, pos);
    if (!hit) {
      ++pos;
      continue;
    }
    size_t start = pos, stop = pos + hit->pattern.size();
    pos = stop;  // the search resumes after a match, kept or not, as the library's does
    const AddedToken& t = *hit->token;
    if (t.single_word) {
      const bool word_before = start > 0 && is_word_character(code_point_before(text, start));
      const bool word_after = stop < text.size() && is_word_character(code_point_at(text, stop, nullptr));
      if (word_before || word_after) continue;
    }
    if (t.lstrip) {
      size_t s = start;
      while (s > 0 && is_white_space(code_point_before(text, s))) {
        --s;
        while (s > 0 && (static_cast<uint8_t>(text[s]) & 0xC0) == 0x80) --s;
      }
      start = std::max(s, emitted);  // spaces an earlier match already took stay with it
    }
    if (t.rstrip) {
      size_t next = stop;
      while (stop < text.size() && is_white_space(code_point_at(text, stop, &next))) stop = next;
    }
    if (emitted < start) out.push_back({emitted, start, -1});
    out.push_back({start, stop, t.id});
    emitted = stop;
  }
  if (emitted < text.size() || out.empty()) out.push_back({emitted, text.size(), -1});
  return out;
}

}  // namespace anvil::tokenizer
