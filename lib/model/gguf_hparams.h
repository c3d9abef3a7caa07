#pragma once
// llama.cpp's {arch}.* hyperparameter keys, one row each: the key, its GGUF type, and how it reads
// from and writes to a ModelConfig. A family's row lists the keys llama.cpp's converter writes
// for it (beyond the six every family has); the GGUF writer writes exactly those, the reader
// reads them, so the two cannot drift apart.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "io/gguf.h"
#include "model/config.h"

namespace anvil::model {

enum class HParam : uint8_t {
  RmsEpsilon,
  LayerNormEpsilon,
  RopeFreqBase,
  RopeDimensionCount,
  KeyLength,              // written only where head_dim is not hidden / heads
  ValueLength,
  VocabSize,
  ExpertCount,
  ExpertUsedCount,
  ExpertFeedForwardLength,
  ExpertSharedFeedForwardLength,
  ExpertSharedCount,
  ExpertGatingFunc,       // 1 = softmax
  ExpertWeightsScale,
  LeadingDenseBlockCount,
  SlidingWindow,
  AttnLogitSoftcap,
  FinalLogitSoftcap,
  RopeFreqBaseSwa,
  RopeScalingTypeNone,    // DeepSeek's converter writes rope.scaling.type = "none"
  RopeScalingLinear,      // rope.scaling.type = "linear" and rope.scaling.factor, when the config scales linearly
  RopeOriginalContext,
  EmbeddingScale,
  ResidualScale,
  LogitScale,
};

using GgufMetadata = std::vector<std::pair<std::string, io::GgufValue>>;

// The {arch}.* keys for a config: the six common ones, then the family's list.
GgufMetadata write_gguf_hparams(const ModelConfig& config);
// Refuses (an anvil::Error naming `where`) a config whose model a GGUF of its family cannot
// describe, because llama.cpp fixes what the config varies: Gemma 2/3's window pattern and query
// scale, a MoE's top-k renormalisation. Reading the GGUF back would give another model.
void check_gguf_can_describe(const ModelConfig& config, const std::string& where);

// Fills a config from a GGUF's keys (the common ones and the family's list), every value checked
// for type and range; an anvil::Error naming the file and key otherwise.
void read_gguf_hparams(const io::GgufFile& gguf, ModelConfig& config);

}  // namespace anvil::model
