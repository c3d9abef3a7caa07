#include "eval/perplexity.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <atomic>
#include <chrono>
#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>

#include "model/transformer.h"
#include "util/blas_info.h"
#include "util/error.h"

namespace anvil::eval {
namespace {

struct BatchSums {
  double nll = 0, ref_nll = 0, kl = 0;
  int64_t agree = 0;
};

// The logits of a batch are scored one vocabulary slice at a time (at most options.logit_bytes
// of fp32 logits at once): per position a running log-sum-exp, the target's logit and the argmax, and with
// a reference model the running sum of p_ref * (logit_ref - logit), from which
// KL(ref || model) = sum p_ref (l_ref - l) - lse_ref + lse. Over a 128k vocabulary a batch of four
// 256-token windows would otherwise hold 0.5 GB of logits (twice, with log_softmax's copy).
struct LogitStream {
  at::Tensor max, sum, target, best, best_id;  // fp64 [N] (best_id int64)
  LogitStream(int64_t n, at::Device device) {
    auto f64 = at::TensorOptions().dtype(at::kDouble).device(device);
    max = at::full({n}, -std::numeric_limits<double>::infinity(), f64);
    sum = at::zeros({n}, f64);
    target = at::zeros({n}, f64);
    best = at::full({n}, -std::numeric_limits<double>::infinity(), f64);
    best_id = at::zeros({n}, at::TensorOptions().dtype(at::kLong).device(device));
  }
  // Folds in the logits [N, c] of vocabulary ids [v0, v0 + c); returns the rescale factor
  // exp(old max - new max) for running sums the caller keeps on the same scale.
  at::Tensor add(const at::Tensor& logits, int64_t v0, const at::Tensor& targets) {
    const int64_t c = logits.size(1);
    auto [chunk_max, chunk_arg] = logits.max(1);
    auto new_max = at::maximum(max, chunk_max.to(at::kDouble));
    auto rescale = at::exp(max - new_max);
    auto shifted = (logits - new_max.to(logits.scalar_type()).unsqueeze(1)).exp();
    sum = sum * rescale + at::sum(shifted, {1}, false, at::kDouble);
    max = new_max;
    auto inside = targets.ge(v0).logical_and(targets.lt(v0 + c));
    auto picked = logits.gather(1, (targets - v0).clamp(0, c - 1).unsqueeze(1)).squeeze(1).to(at::kDouble);
    target = target + at::where(inside, picked, at::zeros_like(picked));
    auto better = chunk_max.to(at::kDouble).gt(best);  // strict: the first maximum wins, as argmax
    best = at::where(better, chunk_max.to(at::kDouble), best);
    best_id = at::where(better, chunk_arg + v0, best_id);
    return rescale;
  }
  at::Tensor log_sum_exp() const { return max + at::log(sum); }
};

BatchSums score_batch(const model::Transformer& model, const model::Transformer* reference, const at::Tensor& ids,
                      int64_t logit_bytes) {
  c10::InferenceMode guard;
  const int64_t W = ids.size(1), vocab = model.config().vocab_size;
  auto targets = ids.narrow(1, 1, W - 1).reshape({-1}).to(model.options().device);
  const int64_t N = targets.numel();
  auto positions = [&](const model::Transformer& m) {
    auto h = m.hidden_states(ids);
    return h.narrow(1, 0, W - 1).reshape({N, h.size(-1)});
  };
  const auto h = positions(model);
  const auto h_ref = reference ? positions(*reference) : at::Tensor();
  const int64_t slice = std::clamp<int64_t>(logit_bytes / (4 * N), std::min<int64_t>(256, vocab), vocab);
  const at::Device device = model.options().device;
  LogitStream own(N, device), ref(N, device);
  auto kl_sum = at::zeros({N}, at::TensorOptions().dtype(at::kDouble).device(device));
  for (int64_t v0 = 0; v0 < vocab; v0 += slice) {
    const int64_t c = std::min(slice, vocab - v0);
    auto logits = model.lm_head(h, v0, c);
    own.add(logits, v0, targets);
    if (!reference) continue;
    auto ref_logits = reference->lm_head(h_ref, v0, c);
    auto rescale = ref.add(ref_logits, v0, targets);
    auto weight = (ref_logits - ref.max.to(ref_logits.scalar_type()).unsqueeze(1)).exp();
    kl_sum = kl_sum * rescale + at::sum(weight * (ref_logits - logits), {1}, false, at::kDouble);
  }
  BatchSums s;
  s.nll = (own.log_sum_exp() - own.target).sum().item<double>();
  if (reference) {
    const auto lse_ref = ref.log_sum_exp();
    s.ref_nll = (lse_ref - ref.target).sum().item<double>();
    s.kl = (kl_sum / ref.sum - lse_ref + own.log_sum_exp()).sum().item<double>();
    s.agree = ref.best_id.eq(own.best_id).sum().item<int64_t>();
  }
  return s;
}

}  // namespace

PerplexityResult evaluate_perplexity(const model::Transformer& model, const std::vector<int32_t>& tokens,
                                     const PerplexityOptions& options, const model::Transformer* reference) {
  const int64_t W = options.window;
  if (W < 2) fail("perplexity", "window must be at least 2 tokens");
  if (options.batch_windows < 1) fail("perplexity", "batch must be at least 1 window");
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
  const int64_t B = options.batch_windows;
  const int64_t n_batches = (n_windows + B - 1) / B;
  std::vector<BatchSums> sums(n_batches);
  auto batch_ids = [&](int64_t b) {
    int64_t nb = std::min(B, n_windows - b * B);
    return all.narrow(0, b * B * W, nb * W).view({nb, W});
  };

  std::mutex progress_mutex;
  std::atomic<int64_t> windows_done{0};
  auto report = [&](int64_t b) {
    int64_t done = windows_done += batch_ids(b).size(0);
    if (options.progress) {
      std::lock_guard lock(progress_mutex);
      options.progress(done, n_windows, done * W);
    }
  };

  auto t0 = std::chrono::steady_clock::now();
  const bool parallel = options.threads > 1 && model.options().device.is_cpu() && n_batches > 1;
  if (parallel) {
    SingleThreadedBlas blas_guard;
    tbb::task_arena arena(options.threads);
    arena.execute([&] {
      tbb::parallel_for(int64_t{0}, n_batches, [&](int64_t b) {
        at::set_num_threads(1);  // this worker's operators stay on this worker
        sums[b] = score_batch(model, reference, batch_ids(b), options.logit_bytes);
        report(b);
      });
    });
  } else {
    for (int64_t b = 0; b < n_batches; ++b) {
      sums[b] = score_batch(model, reference, batch_ids(b), options.logit_bytes);
      report(b);
    }
  }
  PerplexityResult r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  BatchSums total;
  for (const auto& s : sums) {  // summed in window order: the result does not depend on scheduling
    total.nll += s.nll;
    total.ref_nll += s.ref_nll;
    total.kl += s.kl;
    total.agree += s.agree;
  }
  r.windows = n_windows;
  r.tokens_scored = n_windows * (W - 1);
  r.tokens_processed = n_windows * W;
  r.nll_sum = total.nll;
  r.perplexity = std::exp(total.nll / static_cast<double>(r.tokens_scored));
  if (reference) {
    r.reference_perplexity = std::exp(total.ref_nll / static_cast<double>(r.tokens_scored));
    r.mean_kl = total.kl / static_cast<double>(r.tokens_scored);
    r.top1_agreement = static_cast<double>(total.agree) / static_cast<double>(r.tokens_scored);
  }
  return r;
}

}  // namespace anvil::eval
