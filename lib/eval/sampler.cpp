#include "eval/sampler.h"

#include "util/error.h"

namespace anvil::eval {

Sampler::Sampler(const SamplingOptions& options) : options_(options), engine_(options.seed) {
  if (options.temperature < 0) fail("sampling", "temperature must be >= 0");
  if (!(options.top_p > 0 && options.top_p <= 1)) fail("sampling", "top-p must be in (0, 1]");
  if (options.top_k < 0) fail("sampling", "top-k must be >= 0");
}

double Sampler::uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

int32_t Sampler::next(const at::Tensor& logits) {
  auto row = logits.to(at::kCPU, at::kFloat).reshape({-1});
  if (options_.temperature == 0) return static_cast<int32_t>(row.argmax().item<int64_t>());
  auto probs = at::softmax(row / options_.temperature, -1);
  auto [sorted, order] = probs.sort(-1, /*descending=*/true);
  int64_t keep = sorted.size(0);
  if (options_.top_k > 0) keep = std::min(keep, options_.top_k);
  if (options_.top_p < 1) {
    // Keep the smallest prefix whose mass reaches top_p (at least one token).
    auto cum = sorted.cumsum(0);
    auto acc = cum.accessor<float, 1>();
    int64_t n = 1;
    while (n < keep && acc[n - 1] < options_.top_p) ++n;
    keep = n;
  }
  auto p = sorted.narrow(0, 0, keep);
  auto pacc = p.accessor<float, 1>();
  double total = 0;
  for (int64_t i = 0; i < keep; ++i) total += pacc[i];
  double u = uniform() * total, cum = 0;
  int64_t pick = keep - 1;
  for (int64_t i = 0; i < keep; ++i) {
    cum += pacc[i];
    if (u < cum) {
      pick = i;
      break;
    }
  }
  return static_cast<int32_t>(order[pick].item<int64_t>());
}

}  // namespace anvil::eval
