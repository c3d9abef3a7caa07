#pragma once
// Perplexity with the protocol of ../shared/refs/perplexity_val.json: non-overlapping windows of
// `window` tokens (the short tail dropped), each scored on positions 1..window-1. Optionally
// compares every next-token distribution with a reference model's (mean KL, top-1 agreement).
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

namespace anvil::model {
class Transformer;
}

namespace anvil::eval {

struct PerplexityOptions {
  int64_t window = 256;
  int64_t batch_windows = 4;  // windows per forward pass
  // CPU: forward passes run concurrently, one per thread, each single-threaded. This beats
  // splitting every GEMM across threads on few cores (no fork/join or spin-wait per operator).
  int threads = 1;
  // At most this many bytes of fp32 logits at once per forward pass: the batch is scored one
  // vocabulary slice at a time (at least 256 ids per slice).
  int64_t logit_bytes = 64 << 20;
  std::function<void(int64_t windows_done, int64_t windows_total, int64_t tokens_done)> progress;
};

struct PerplexityResult {
  double perplexity = 0;
  double nll_sum = 0;
  int64_t tokens_scored = 0;
  int64_t tokens_processed = 0;
  int64_t windows = 0;
  double seconds = 0;
  double tokens_per_second() const { return seconds > 0 ? tokens_processed / seconds : 0; }
  // With a reference model:
  std::optional<double> reference_perplexity;
  std::optional<double> mean_kl;         // mean over scored positions of KL(reference || model), nats
  std::optional<double> top1_agreement;  // fraction of positions where both argmaxes agree
};

PerplexityResult evaluate_perplexity(const model::Transformer& model, const std::vector<int32_t>& tokens,
                                     const PerplexityOptions& options = {},
                                     const model::Transformer* reference = nullptr);

}  // namespace anvil::eval
