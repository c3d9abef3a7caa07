#pragma once
// Autoregressive decoding with the KV cache: one forward over the prompt, then one token at a time.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "eval/sampler.h"

namespace anvil::model {
class Transformer;
}

namespace anvil::eval {

struct GenerateOptions {
  int64_t max_new_tokens = 128;
  SamplingOptions sampling;
  std::vector<int64_t> stop_tokens;                  // usually the EOS ids
  std::function<bool(int32_t token)> on_token;       // return false to stop early
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated tokens only (a stop token included when hit)
  std::string stop_reason;      // "eos", "length", "callback", "context"
  double prompt_seconds = 0;
  double decode_seconds = 0;
  double decode_tokens_per_second() const {
    return decode_seconds > 0 && tokens.size() > 1 ? (tokens.size() - 1) / decode_seconds : 0;
  }
};

GenerateResult generate(const model::Transformer& model, const std::vector<int32_t>& prompt,
                        const GenerateOptions& options);

}  // namespace anvil::eval
