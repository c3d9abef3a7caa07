#include "eval/generate.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>

#include "model/transformer.h"
#include "util/error.h"

namespace anvil::eval {

GenerateResult generate(const model::Transformer& model, const std::vector<int32_t>& prompt,
                        const GenerateOptions& options) {
  c10::InferenceMode guard;
  if (prompt.empty()) fail("generate", "the prompt is empty (no tokens)");
  const auto& cfg = model.config();
  const int64_t capacity = std::min<int64_t>(cfg.max_position_embeddings,
                                             static_cast<int64_t>(prompt.size()) + options.max_new_tokens);
  if (static_cast<int64_t>(prompt.size()) >= cfg.max_position_embeddings)
    fail("generate", "the prompt has " + std::to_string(prompt.size()) + " tokens; the model's context is " +
                         std::to_string(cfg.max_position_embeddings));
  auto cache = model.new_cache(1, capacity);
  Sampler sampler(options.sampling);
  GenerateResult result;
  result.stop_reason = "length";

  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  auto ids = at::from_blob(const_cast<int32_t*>(prompt.data()), {1, static_cast<int64_t>(prompt.size())}, at::kInt)
                 .to(at::kLong);
  // Only the prompt's last position is sampled from: the LM head runs on it alone (a long prompt's
  // logits over a 128k vocabulary would be 0.5 MB per token).
  auto hidden = model.hidden_states(ids, &cache);
  auto logits = model.lm_head(hidden.narrow(1, hidden.size(1) - 1, 1));
  auto t1 = clock::now();
  result.prompt_seconds = std::chrono::duration<double>(t1 - t0).count();

  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    int32_t token = sampler.next(logits[0][logits.size(1) - 1]);
    result.tokens.push_back(token);
    if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), token) != options.stop_tokens.end()) {
      result.stop_reason = "eos";
      break;
    }
    if (options.on_token && !options.on_token(token)) {
      result.stop_reason = "callback";
      break;
    }
    if (step + 1 == options.max_new_tokens) break;
    if (cache.length >= capacity) {
      result.stop_reason = "context";
      break;
    }
    auto next = at::full({1, 1}, static_cast<int64_t>(token), at::TensorOptions().dtype(at::kLong));
    logits = model.forward(next, &cache);
  }
  result.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return result;
}

}  // namespace anvil::eval
