#include "eval/perplexity.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <cmath>

#include "model/transformer.h"
#include "util/error.h"

namespace anvil::eval {

PerplexityResult evaluate_perplexity(const model::Transformer& model, const std::vector<int32_t>& tokens,
                                     const PerplexityOptions& options, const model::Transformer* reference) {
  c10::InferenceMode guard;
  const int64_t W = options.window;
  if (W < 2) fail("perplexity", "window must be at least 2 tokens");
  const int64_t n_windows = static_cast<int64_t>(tokens.size()) / W;
  if (n_windows == 0)
    fail("perplexity", "text has " + std::to_string(tokens.size()) + " tokens, fewer than one window of " +
                           std::to_string(W));
  const int64_t vocab = model.config().vocab_size;
  if (reference && reference->config().vocab_size != vocab)
    fail("perplexity", "reference model has a different vocabulary size");
  for (int32_t t : tokens)
    if (t < 0 || t >= vocab) fail("perplexity", "token id " + std::to_string(t) + " outside the model's vocabulary");

  auto all = at::from_blob(const_cast<int32_t*>(tokens.data()), {n_windows * W}, at::kInt).to(at::kLong);
  PerplexityResult r;
  double ref_nll = 0, kl_sum = 0;
  int64_t agree = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t w0 = 0; w0 < n_windows; w0 += options.batch_windows) {
    int64_t nb = std::min(options.batch_windows, n_windows - w0);
    auto ids = all.narrow(0, w0 * W, nb * W).view({nb, W});
    auto targets = ids.narrow(1, 1, W - 1).reshape({-1}).to(model.options().device);
    auto logits = model.forward(ids).narrow(1, 0, W - 1).reshape({-1, vocab});
    auto logp = at::log_softmax(logits, -1);
    r.nll_sum -= logp.gather(1, targets.unsqueeze(1)).sum().item<double>();
    if (reference) {
      auto ref_logp = at::log_softmax(reference->forward(ids).narrow(1, 0, W - 1).reshape({-1, vocab}), -1);
      ref_nll -= ref_logp.gather(1, targets.unsqueeze(1)).sum().item<double>();
      kl_sum += (ref_logp.exp() * (ref_logp - logp)).sum().item<double>();
      agree += (ref_logp.argmax(-1) == logp.argmax(-1)).sum().item<int64_t>();
    }
    r.tokens_scored += nb * (W - 1);
    r.tokens_processed += nb * W;
    if (options.progress) options.progress(w0 + nb, n_windows, r.tokens_processed);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.windows = n_windows;
  r.perplexity = std::exp(r.nll_sum / static_cast<double>(r.tokens_scored));
  if (reference) {
    r.reference_perplexity = std::exp(ref_nll / static_cast<double>(r.tokens_scored));
    r.mean_kl = kl_sum / static_cast<double>(r.tokens_scored);
    r.top1_agreement = static_cast<double>(agree) / static_cast<double>(r.tokens_scored);
  }
  return r;
}

}  // namespace anvil::eval
