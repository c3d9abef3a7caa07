#pragma once
// Training and validation examples, tokenized once up front. Which examples form step s's batch
// is a pure function of (seed, s), so a resumed run sees exactly the batches it would have seen.
#include <cstdint>
#include <string>
#include <vector>

#include "train/recipe.h"

namespace anvil::tokenizer {
class Tokenizer;
}

namespace anvil::train {

struct Example {
  std::vector<int32_t> ids;
  std::vector<uint8_t> trained;  // trained[t]: the loss includes predicting ids[t] from ids[<t]
};

struct SpecialTokens {
  int32_t eos = -1;  // appended to JSONL examples when >= 0
  int32_t pad = 0;   // fills short rows (never trained)
};

class TrainingData {
 public:
  TrainingData(const Recipe& recipe, const tokenizer::Tokenizer& tok, SpecialTokens special);

  // Examples per epoch: windows of the raw sources plus JSONL examples (or packed rows).
  int64_t epoch_size() const { return static_cast<int64_t>(items_.size()); }
  // The n-th example drawn since training began (epoch n / epoch_size, shuffled per epoch).
  Example draw(int64_t n) const;
  const std::vector<Example>& validation() const { return validation_; }
  int64_t training_tokens() const;  // in one epoch, for the summary line
  std::string summary() const;

 private:
  struct Item {
    int32_t stream = -1;  // >= 0: a window of raw stream `stream`
    int64_t index = 0;    // window number, or index into examples_
  };
  struct Stream {
    std::vector<int32_t> tokens;
    bool random = true;
  };
  Example window(const Stream& s, int64_t offset) const;

  int64_t seq_len_;
  uint64_t seed_;
  bool shuffle_;
  std::vector<Stream> streams_;
  std::vector<Example> examples_;
  std::vector<Item> items_;
  std::vector<Example> validation_;
  mutable std::vector<int64_t> permutation_;
  mutable int64_t permutation_epoch_ = -1;
};

// SplitMix64: a small, well-mixed hash for deriving per-step random numbers from the seed.
uint64_t mix64(uint64_t x);

}  // namespace anvil::train
