#pragma once
// tokenizer.json's BPE model: the vocabulary, the ranked merges, and what happens to a character
// the vocabulary lacks (byte fallback to <0xXX> tokens, the unknown token, fused or not).
// Merging follows the tokenizers library's order exactly: lowest rank first, leftmost among equals.
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/token_table.h"

namespace anvil::tokenizer {

struct TokenizerJson;

// Hash and equality that let std::string-keyed maps be searched with a string_view.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};

class BpeModel {
 public:
  // `file.rest["model"]` holds the options, `file.vocab` / `file.merges` the tables; `max_id`
  // bounds ids (dense tables index them).
  static BpeModel parse(TokenizerJson& file, const std::string& where, int64_t max_id);
  BpeModel();
  ~BpeModel();
  BpeModel(BpeModel&&) noexcept;
  BpeModel& operator=(BpeModel&&) noexcept;

  // Appends the ids of one pre-tokenized piece.
  void tokenize(std::string_view piece, std::vector<int32_t>& out) const;

  const TokenTable& vocab() const { return vocab_; }
  int32_t id_limit() const { return id_limit_; }  // highest vocabulary id + 1
  // The merges as (left id, right id), in rank order.
  const std::vector<std::pair<int32_t, int32_t>>& merge_list() const { return merge_list_; }
  bool byte_fallback() const { return byte_fallback_; }
  int32_t unk_id() const { return unk_id_; }  // -1: none

 private:
  void merge_word(std::string_view piece, std::vector<int32_t>& out) const;

  std::string where_;
  TokenTable vocab_;
  int32_t id_limit_ = 0;
  MergeTable merges_;
  std::vector<std::pair<int32_t, int32_t>> merge_list_;
  std::vector<int32_t> ascii_ids_;  // id of each one-byte character, -1 if absent (the common lookup)
  int32_t byte_ids_[256];           // <0xXX> tokens for byte fallback, -1 if absent
  bool byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  std::string unk_token_;
  int32_t unk_id_ = -1;

  mutable std::shared_mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

}  // namespace anvil::tokenizer
