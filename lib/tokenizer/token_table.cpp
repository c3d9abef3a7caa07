#include "tokenizer/token_table.h"

#include <functional>

namespace anvil::tokenizer {
namespace {

uint64_t mix(uint64_t x) {  // splitmix64's finalizer: pairs of small ids spread over the table
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

size_t capacity_for(size_t n) {
  size_t c = 16;
  while (c < n * 2) c <<= 1;  // at most half full
  return c;
}

}  // namespace

void TokenTable::reserve(size_t n) {
  if (capacity_for(n) <= slots_.size()) return;
  std::vector<Slot> old;
  old.swap(slots_);
  slots_.assign(capacity_for(n), Slot{});
  for (const auto& s : old)
    if (s.id >= 0) slots_[probe(std::string_view(arena_.data() + s.offset, s.length), s.hash)] = s;
}

void TokenTable::grow() { reserve(slots_.empty() ? 8 : slots_.size()); }

size_t TokenTable::probe(std::string_view token, uint64_t hash) const {
  const size_t mask = slots_.size() - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.id < 0) return i;
    if (s.hash == hash && s.length == token.size() && std::string_view(arena_.data() + s.offset, s.length) == token)
      return i;
  }
}

void TokenTable::insert_or_assign(std::string_view token, int32_t id) {
  if ((count_ + 1) * 2 > slots_.size()) grow();
  const uint64_t hash = hash_of(token);
  Slot& s = slots_[probe(token, hash)];
  if (s.id < 0) {
    s.hash = hash;
    s.offset = static_cast<uint32_t>(arena_.size());
    s.length = static_cast<uint32_t>(token.size());
    arena_.append(token);
    ++count_;
  }
  s.id = id;
}

int32_t TokenTable::find(std::string_view token) const { return find(token, hash_of(token)); }

uint64_t TokenTable::hash_of(std::string_view token) { return std::hash<std::string_view>()(token); }

void TokenTable::prefetch(uint64_t hash) const {
  if (!slots_.empty()) __builtin_prefetch(&slots_[hash & (slots_.size() - 1)]);
}

int32_t TokenTable::find(std::string_view token, uint64_t hash) const {
  if (slots_.empty()) return -1;
  return slots_[probe(token, hash)].id;
}

void MergeTable::reserve(size_t n) {
  if (capacity_for(n) <= slots_.size()) return;
  std::vector<Slot> old;
  old.swap(slots_);
  slots_.assign(capacity_for(n), Slot{});
  const size_t mask = slots_.size() - 1;
  for (const auto& s : old)
    if (s.key != kEmpty) {
      size_t i = mix(s.key) & mask;
      while (slots_[i].key != kEmpty) i = (i + 1) & mask;
      slots_[i] = s;
    }
}

void MergeTable::grow() { reserve(slots_.empty() ? 8 : slots_.size()); }

void MergeTable::insert_or_assign(int32_t left, int32_t right, Merge m) {
  if ((count_ + 1) * 2 > slots_.size()) grow();
  const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  const size_t mask = slots_.size() - 1;
  size_t i = mix(key) & mask;
  while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & mask;
  if (slots_[i].key == kEmpty) ++count_;
  slots_[i] = {key, m};
}

void MergeTable::prefetch(int32_t left, int32_t right) const {
  if (slots_.empty()) return;
  const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  __builtin_prefetch(&slots_[mix(key) & (slots_.size() - 1)]);
}

const MergeTable::Merge* MergeTable::find(int32_t left, int32_t right) const {
  if (slots_.empty()) return nullptr;
  const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  const size_t mask = slots_.size() - 1;
  for (size_t i = mix(key) & mask;; i = (i + 1) & mask) {
    if (slots_[i].key == key) return &slots_[i].merge;
    if (slots_[i].key == kEmpty) return nullptr;
  }
}

}  // namespace anvil::tokenizer
