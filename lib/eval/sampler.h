#pragma once
// Next-token choice: greedy (temperature 0) or temperature + top-k + top-p sampling with a
// seeded generator, so that a seed repeats a run exactly.
#include <ATen/ATen.h>

#include <cstdint>
#include <random>

namespace anvil::eval {

struct SamplingOptions {
  double temperature = 0.0;  // 0: greedy
  double top_p = 1.0;
  int64_t top_k = 0;         // 0: off
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& options);
  // logits: [vocab] fp32.
  int32_t next(const at::Tensor& logits);

 private:
  double uniform();  // [0, 1) from the seeded engine, identical on every platform
  SamplingOptions options_;
  std::mt19937_64 engine_;
};

}  // namespace anvil::eval
