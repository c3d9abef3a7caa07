#include "eval/speed_bench.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <random>

#include "model/transformer.h"
#include "util/error.h"

namespace anvil::eval {
namespace {

SpeedSample summarize(std::vector<double> runs) {
  SpeedSample s;
  s.runs = std::move(runs);
  for (double r : s.runs) s.mean += r / static_cast<double>(s.runs.size());
  double var = 0;
  for (double r : s.runs) var += (r - s.mean) * (r - s.mean);
  s.stddev = s.runs.size() > 1 ? std::sqrt(var / static_cast<double>(s.runs.size() - 1)) : 0;
  return s;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

SpeedResult measure_speed(const model::Transformer& model, const SpeedOptions& o) {
  if (o.prompt_tokens < 0 || o.generated_tokens < 0 || o.repetitions < 1)
    fail("bench", "token counts must be at least 0 and repetitions at least 1");
  const auto& c = model.config();
  if (o.prompt_tokens + o.generated_tokens + 1 > c.max_position_embeddings)
    fail("bench", "prompt + generated tokens exceed the model's context of " + std::to_string(c.max_position_embeddings));
  c10::InferenceMode guard;
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<int64_t> id(0, c.vocab_size - 1);
  auto random_ids = [&](int64_t n) {
    std::vector<int64_t> v(static_cast<size_t>(n));
    for (auto& t : v) t = id(rng);
    return at::tensor(v).view({1, n});
  };
  // A warm-up pass pages the weights in and sizes the scratch buffers, as llama-bench's does.
  {
    auto cache = model.new_cache(1, 2);
    model.lm_head(model.hidden_states(random_ids(1), &cache));
  }
  std::vector<double> pp, tg;
  for (int r = 0; r < o.repetitions; ++r) {
    if (o.prompt_tokens > 0) {
      if (o.progress) o.progress("prompt", r);
      auto ids = random_ids(o.prompt_tokens);
      auto cache = model.new_cache(1, o.prompt_tokens);
      const auto t0 = std::chrono::steady_clock::now();
      auto h = model.hidden_states(ids, &cache);
      model.lm_head(h.narrow(1, h.size(1) - 1, 1)).sum().item<float>();
      pp.push_back(static_cast<double>(o.prompt_tokens) / seconds_since(t0));
    }
    if (o.generated_tokens > 0) {
      if (o.progress) o.progress("generation", r);
      auto cache = model.new_cache(1, o.generated_tokens + 1);
      at::Tensor next = random_ids(1);
      const auto t0 = std::chrono::steady_clock::now();
      for (int64_t t = 0; t < o.generated_tokens; ++t)
        next = model.forward(next, &cache).select(1, 0).argmax(-1, true);
      tg.push_back(static_cast<double>(o.generated_tokens) / seconds_since(t0));
    }
  }
  return {summarize(std::move(pp)), summarize(std::move(tg))};
}

uint64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<uint64_t>(u.ru_maxrss) * 1024;  // Linux reports KiB
}

}  // namespace anvil::eval
