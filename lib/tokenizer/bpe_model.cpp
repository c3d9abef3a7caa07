#include "tokenizer/bpe_model.h"

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>

#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer_json.h"
#include "util/error.h"
#include "util/json_reader.h"

namespace anvil::tokenizer {
namespace {

using nlohmann::json;

// Pieces longer than this are not cached: whole SentencePiece-style texts are one piece, and
// caching them would only grow memory.
constexpr size_t kMaxCachedPiece = 256;
constexpr size_t kMaxCacheEntries = 200'000;

}  // namespace

BpeModel::BpeModel() { std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1); }
BpeModel::~BpeModel() = default;
BpeModel::BpeModel(BpeModel&& o) noexcept { *this = std::move(o); }
BpeModel& BpeModel::operator=(BpeModel&& o) noexcept {
  where_ = std::move(o.where_);
  vocab_ = std::move(o.vocab_);
  id_limit_ = o.id_limit_;
  merges_ = std::move(o.merges_);
  merge_list_ = std::move(o.merge_list_);
  ascii_ids_ = std::move(o.ascii_ids_);
  std::copy(std::begin(o.byte_ids_), std::end(o.byte_ids_), byte_ids_);
  byte_fallback_ = o.byte_fallback_;
  fuse_unk_ = o.fuse_unk_;
  ignore_merges_ = o.ignore_merges_;
  unk_token_ = std::move(o.unk_token_);
  unk_id_ = o.unk_id_;
  cache_ = std::move(o.cache_);
  return *this;
}

BpeModel BpeModel::parse(TokenizerJson& file, const std::string& where, int64_t max_id) {
  BpeModel b;
  b.where_ = where;
  const json& m = file.rest["model"];
  const util::JsonFields f(m, where, "model.");
  if (const std::string type = f.string_or("type", ""); type != "BPE")
    f.error("type", "is '" + type + "'; only BPE tokenizers are supported (not Unigram, WordPiece or WordLevel)");
  // Options that change the ids and that anvil does not implement are refused, not ignored.
  if (!f.string_or("continuing_subword_prefix", "").empty() || !f.string_or("end_of_word_suffix", "").empty())
    fail(where, "model.continuing_subword_prefix/end_of_word_suffix: not supported");
  if (f.number_or("dropout", 0.0, 0.0, 1.0) != 0.0) f.error("dropout", "is not zero (random merges are not supported)");
  b.byte_fallback_ = f.boolean_or("byte_fallback", false);
  b.fuse_unk_ = f.boolean_or("fuse_unk", false);
  b.ignore_merges_ = f.boolean_or("ignore_merges", false);
  b.unk_token_ = f.string_or("unk_token", "");

  if (!file.has_vocab) f.error("vocab", "is missing or not an object");
  b.vocab_.reserve(file.vocab.size());
  int32_t highest = -1;
  for (const auto& [token, id] : file.vocab) {
    if (id < 0 || id > max_id) fail(where, "model.vocab['" + token + "']: id " + std::to_string(id) + " out of range");
    b.vocab_.insert_or_assign(token, static_cast<int32_t>(id));
    highest = std::max(highest, static_cast<int32_t>(id));
  }
  b.id_limit_ = highest + 1;
  b.ascii_ids_.assign(128, -1);
  for (int c = 0; c < 128; ++c) b.ascii_ids_[c] = b.vocab_.find(std::string_view(reinterpret_cast<const char*>(&c), 1));
  for (int byte = 0; byte < 256; ++byte) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", byte);
    b.byte_ids_[byte] = b.vocab_.find(name);
  }
  if (!b.unk_token_.empty()) b.unk_id_ = b.vocab_.find(b.unk_token_);

  if (!file.has_merges) f.error("merges", "is missing or not a list");
  b.merges_.reserve(file.merges.size());
  b.merge_list_.reserve(file.merges.size());
  // In batches: hash and prefetch every lookup of the batch, then resolve them.
  constexpr size_t kBatch = 64;
  struct Lookup {
    std::string joined;
    uint64_t h[3];
    int32_t id[3];
  };
  std::vector<Lookup> batch(kBatch);
  for (size_t first = 0; first < file.merges.size(); first += kBatch) {
    const size_t n = std::min(kBatch, file.merges.size() - first);
    for (size_t i = 0; i < n; ++i) {
      const auto& [left, right] = file.merges[first + i];
      Lookup& l = batch[i];
      l.joined.assign(left).append(right);
      l.h[0] = TokenTable::hash_of(left), l.h[1] = TokenTable::hash_of(right), l.h[2] = TokenTable::hash_of(l.joined);
      for (uint64_t h : l.h) b.vocab_.prefetch(h);
    }
    for (size_t i = 0; i < n; ++i) {
      const auto& [left, right] = file.merges[first + i];
      Lookup& l = batch[i];
      l.id[0] = b.vocab_.find(left, l.h[0]), l.id[1] = b.vocab_.find(right, l.h[1]), l.id[2] = b.vocab_.find(l.joined, l.h[2]);
      if (l.id[0] < 0 || l.id[1] < 0 || l.id[2] < 0)
        fail(where, "model.merges[" + std::to_string(first + i) + "]: '" + left + " " + right +
                        "' uses tokens missing from the vocabulary");
      b.merges_.prefetch(l.id[0], l.id[1]);
    }
    for (size_t i = 0; i < n; ++i) {
      const Lookup& l = batch[i];
      // A repeated pair keeps its last rank, as the library's map does.
      b.merges_.insert_or_assign(l.id[0], l.id[1], {static_cast<int32_t>(first + i), l.id[2]});
      b.merge_list_.emplace_back(l.id[0], l.id[1]);
    }
  }
  // The tables now hold what the lists did.
  file.vocab = {};
  file.merges = {};
  return b;
}

void BpeModel::tokenize(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (ignore_merges_)
    if (const int32_t id = vocab_.find(piece); id >= 0) {
      out.push_back(id);
      return;
    }
  const bool cacheable = piece.size() < kMaxCachedPiece;
  if (cacheable) {
    std::shared_lock lock(cache_mutex_);
    if (auto it = cache_.find(piece); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = out.size();
  merge_word(piece, out);
  if (cacheable) {
    std::unique_lock lock(cache_mutex_);
    if (cache_.size() > kMaxCacheEntries) cache_.clear();
    cache_.emplace(std::string(piece), std::vector<int32_t>(out.begin() + static_cast<ptrdiff_t>(first), out.end()));
  }
}

void BpeModel::merge_word(std::string_view w, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(w.size());
  auto add = [&](int32_t id) {
    const int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, index + 1, true});
  };
  // One symbol per character; a character the vocabulary lacks becomes its <0xXX> byte tokens
  // (byte fallback, when all exist) or the unknown token, fused with a preceding one if asked.
  bool pending_unk = false;
  size_t pos = 0;
  while (pos < w.size()) {
    const size_t start = pos;
    int32_t id = -1;
    const auto lead = static_cast<uint8_t>(w[pos]);
    if (lead < 0x80) {
      ++pos;
      id = ascii_ids_[lead];
    } else {
      next_code_point(w, pos);
      if (pos == start) ++pos;
      id = vocab_.find(w.substr(start, pos - start));
    }
    if (id >= 0) {
      if (pending_unk) add(unk_id_), pending_unk = false;
      add(id);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (size_t i = start; i < pos; ++i) all = all && byte_ids_[static_cast<uint8_t>(w[i])] >= 0;
      if (all) {
        // The library adds these before a pending unknown token; so do we.
        for (size_t i = start; i < pos; ++i) add(byte_ids_[static_cast<uint8_t>(w[i])]);
        continue;
      }
    }
    if (unk_token_.empty()) continue;  // no unknown token: the library drops the character
    if (unk_id_ < 0) fail(where_, "model.unk_token '" + unk_token_ + "' is not in the vocabulary, and the text needs it");
    if (pending_unk && !fuse_unk_) add(unk_id_);
    pending_unk = true;
  }
  if (pending_unk) add(unk_id_);
  if (!symbols.empty()) symbols.back().next = -1;

  struct Candidate {
    int32_t rank, pos, result;
    bool operator<(const Candidate& o) const {  // priority_queue pops the largest: lowest rank, then leftmost
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate> queue;
  auto consider = [&](int32_t left) {
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    if (const auto* m = merges_.find(symbols[left].id, symbols[right].id)) queue.push({m->rank, left, m->result});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) consider(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    // Stale entries (a neighbour has merged since) no longer name this pair's result.
    const auto* m = merges_.find(left.id, right.id);
    if (!m || m->result != top.result) continue;
    left.id = top.result;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(top.pos);
  }
  for (const auto& s : symbols)
    if (s.alive) out.push_back(s.id);
}

}  // namespace anvil::tokenizer
