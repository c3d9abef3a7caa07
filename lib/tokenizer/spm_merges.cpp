#include "tokenizer/spm_merges.h"

#include <algorithm>
#include <cstdint>

#include "tokenizer/token_table.h"
#include "tokenizer/utf8.h"

namespace anvil::tokenizer {

std::vector<std::pair<std::string, std::string>> merges_from_scores(const std::vector<std::string>& pieces,
                                                                    const std::vector<float>& scores) {
  // transformers: vocab = {piece: id} (a repeated piece keeps its last id) and the scores a dict
  // in first-appearance order holding the last score.
  TokenTable vocab;
  vocab.reserve(pieces.size());
  for (size_t i = 0; i < pieces.size(); ++i) vocab.insert_or_assign(pieces[i], static_cast<int32_t>(i));
  TokenTable first_seen;
  first_seen.reserve(pieces.size());
  std::vector<size_t> order;
  std::vector<float> score_of(pieces.size());
  for (size_t i = 0; i < pieces.size(); ++i) {
    const int32_t seen = first_seen.find(pieces[i]);
    if (seen < 0) {
      first_seen.insert_or_assign(pieces[i], static_cast<int32_t>(i));
      order.push_back(i);
      score_of[i] = scores[i];
    } else {
      score_of[static_cast<size_t>(seen)] = scores[i];
    }
  }

  struct Candidate {
    float score;
    uint32_t left_chars, right_chars;
    int32_t left_id, right_id;
    uint32_t piece;      // index into pieces
    uint32_t split_at;   // byte offset
  };
  std::vector<Candidate> all;
  std::vector<Candidate> local;
  std::vector<size_t> boundaries;
  for (size_t index : order) {
    const std::string& p = pieces[index];
    boundaries.clear();
    for (size_t pos = 0; pos < p.size();) {
      next_code_point(p, pos);
      boundaries.push_back(pos);
    }
    if (boundaries.size() < 2) continue;
    const uint32_t chars = static_cast<uint32_t>(boundaries.size());
    local.clear();
    for (uint32_t k = 0; k + 1 < chars; ++k) {
      const size_t at = boundaries[k];
      const int32_t l = vocab.find(std::string_view(p).substr(0, at));
      if (l < 0) continue;
      const int32_t r = vocab.find(std::string_view(p).substr(at));
      if (r < 0) continue;
      local.push_back({score_of[index], k + 1, chars - k - 1, l, r, static_cast<uint32_t>(index), static_cast<uint32_t>(at)});
    }
    std::sort(local.begin(), local.end(), [](const Candidate& a, const Candidate& b) {
      return a.left_id != b.left_id ? a.left_id < b.left_id : a.right_id < b.right_id;
    });
    all.insert(all.end(), local.begin(), local.end());
  }
  // Python's sorted(..., reverse=True) is stable: equal keys keep their order.
  std::stable_sort(all.begin(), all.end(), [](const Candidate& a, const Candidate& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.left_chars != b.left_chars) return a.left_chars > b.left_chars;
    return a.right_chars > b.right_chars;
  });
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(all.size());
  for (const auto& c : all) {
    const std::string& p = pieces[c.piece];
    out.emplace_back(p.substr(0, c.split_at), p.substr(c.split_at));
  }
  return out;
}

}  // namespace anvil::tokenizer
