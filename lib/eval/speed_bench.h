#pragma once
// What `anvil bench` measures, as llama-bench does: prompt processing (one forward pass over a
// prompt of random token ids, the LM head on its last position only) and generation (one token at
// a time from the KV cache, each the argmax of the last logits), repeated, with mean and spread.
#include <cstdint>
#include <functional>
#include <vector>

namespace anvil::model {
class Transformer;
}

namespace anvil::eval {

struct SpeedOptions {
  int64_t prompt_tokens = 512;     // 0: skip prompt processing
  int64_t generated_tokens = 128;  // 0: skip generation
  int repetitions = 3;
  uint64_t seed = 42;              // the random prompt's ids
  std::function<void(const char* phase, int repetition)> progress;
};

struct SpeedSample {
  double mean = 0, stddev = 0;   // tokens/s over the repetitions
  std::vector<double> runs;
};

struct SpeedResult {
  SpeedSample prompt, generation;
};

SpeedResult measure_speed(const model::Transformer& model, const SpeedOptions& options);

// This process's peak resident set so far, in bytes (getrusage).
uint64_t peak_rss_bytes();

}  // namespace anvil::eval
