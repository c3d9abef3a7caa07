#include "eval/perplexity.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <atomic>
#include <chrono>
#include <cmath>
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

BatchSums score_batch(const model::Transformer& model, const model::Transformer* reference, const at::Tensor& ids) {
  c10::InferenceMode guard;
  const int64_t W = ids.size(1), vocab = model.config().vocab_size;
  BatchSums s;
  auto targets = ids.narrow(1, 1, W - 1).reshape({-1, 1}).to(model.options().device);
  auto logp = at::log_softmax(model.forward(ids).narrow(1, 0, W - 1).reshape({-1, vocab}), -1);
  s.nll = -logp.gather(1, targets).sum().item<double>();
  if (reference) {
    auto ref_logp = at::log_softmax(reference->forward(ids).narrow(1, 0, W - 1).reshape({-1, vocab}), -1);
    s.ref_nll = -ref_logp.gather(1, targets).sum().item<double>();
    s.kl = (ref_logp.exp() * (ref_logp - logp)).sum().item<double>();
    s.agree = (ref_logp.argmax(-1) == logp.argmax(-1)).sum().item<int64_t>();
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
        sums[b] = score_batch(model, reference, batch_ids(b));
        report(b);
      });
    });
  } else {
    for (int64_t b = 0; b < n_batches; ++b) {
      sums[b] = score_batch(model, reference, batch_ids(b));
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
