#pragma once
// Flat open-addressing tables for the two lookups BPE does most: token text -> id, and
// (left id, right id) -> merge. Node-based std::unordered_map spent most of the time of loading
// Gemma-3's 262k-token, 515k-merge file chasing pointers; these keep one probe per cache line.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace anvil::tokenizer {

class TokenTable {
 public:
  void reserve(size_t n);
  // Maps `token` to `id`, replacing an earlier id for the same text.
  void insert_or_assign(std::string_view token, int32_t id);
  int32_t find(std::string_view token) const;  // -1 if absent
  // For batched lookups: hash first and prefetch, then find; loading a 262k-token vocabulary is
  // bound by cache misses, and overlapping them is most of the speed.
  static uint64_t hash_of(std::string_view token);
  void prefetch(uint64_t hash) const;
  int32_t find(std::string_view token, uint64_t hash) const;
  bool contains(std::string_view token) const { return find(token) >= 0; }
  size_t size() const { return count_; }
  template <class F>
  void for_each(F&& f) const {
    for (const auto& s : slots_)
      if (s.id >= 0) f(std::string_view(arena_.data() + s.offset, s.length), s.id);
  }

 private:
  struct Slot {
    uint64_t hash;
    uint32_t offset, length;
    int32_t id = -1;  // -1: empty
  };
  size_t probe(std::string_view token, uint64_t hash) const;
  void grow();
  std::string arena_;
  std::vector<Slot> slots_;
  size_t count_ = 0;
};

class MergeTable {
 public:
  struct Merge {
    int32_t rank, result;
  };
  void reserve(size_t n);
  void insert_or_assign(int32_t left, int32_t right, Merge m);
  void prefetch(int32_t left, int32_t right) const;
  const Merge* find(int32_t left, int32_t right) const;
  size_t size() const { return count_; }

 private:
  struct Slot {
    uint64_t key = kEmpty;
    Merge merge;
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // ids are non-negative, so no real key is all ones
  void grow();
  std::vector<Slot> slots_;
  size_t count_ = 0;
};

}  // namespace anvil::tokenizer
