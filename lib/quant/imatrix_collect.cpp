#include "quant/imatrix_collect.h"

#include <c10/core/InferenceMode.h>

#include "model/config.h"
#include "model/gguf_names.h"
#include "model/transformer.h"
#include "util/error.h"

namespace anvil::quant {

Imatrix imatrix_from_columns(const model::ModelConfig& config, const std::map<std::string, ColumnSquares>& by_hf_name) {
  Imatrix m;
  for (const auto& [hf, c] : by_hf_name) {
    const auto name = model::parse_hf_name(*config.arch, hf);
    if (!name || c.sums.empty()) continue;
    ImatrixEntry& e = m.entries[model::gguf_name_of(*name)];
    const size_t cols = c.sums.size();
    if (name->expert < 0) {
      e.sums.assign(c.sums.begin(), c.sums.end());
      e.counts = {static_cast<double>(c.rows)};
      continue;
    }
    const auto experts = static_cast<size_t>(config.num_experts), x = static_cast<size_t>(name->expert);
    if (x >= experts) continue;
    e.sums.resize(cols * experts, 0.f);
    e.counts.resize(experts, 0.0);
    std::copy(c.sums.begin(), c.sums.end(), e.sums.begin() + static_cast<std::ptrdiff_t>(x * cols));
    e.counts[x] = static_cast<double>(c.rows);
  }
  return m;
}

Imatrix collect_imatrix(model::Transformer& model, const std::vector<std::vector<int32_t>>& sources,
                        const std::vector<std::string>& dataset_names, const ImatrixOptions& options,
                        const std::function<void(int64_t, int64_t)>& progress) {
  if (options.chunk <= 0) fail("imatrix", "the chunk size must be at least one token");
  std::vector<std::pair<size_t, int64_t>> chunks;  // source, first token
  for (size_t s = 0; s < sources.size(); ++s)
    for (int64_t t = 0; t + options.chunk <= static_cast<int64_t>(sources[s].size()); t += options.chunk)
      if (options.max_chunks < 0 || static_cast<int64_t>(chunks.size()) < options.max_chunks) chunks.emplace_back(s, t);
  if (chunks.empty())
    fail("imatrix", "the calibration text is shorter than one chunk of " + std::to_string(options.chunk) + " tokens");

  const model::ModelConfig& config = model.config();
  // One accumulator per distinct input (q, k and v share theirs), fp64 over the whole run.
  struct Accumulator {
    at::Tensor sums;
    int64_t rows = 0;
    std::vector<std::string> weights;
  };
  std::map<std::string, Accumulator> by_input;
  model.set_input_observer([&](const std::vector<std::string>& weights, const at::Tensor& x) {
    if (!options.process_output) {
      const auto role = model::parse_hf_name(*config.arch, weights.front());
      if (role && role->role == model::TensorRole::Output) return;
    }
    at::Tensor flat = x.reshape({-1, x.size(-1)}).to(at::kDouble);
    auto [it, fresh] = by_input.try_emplace(weights.front());
    if (fresh) it->second = {at::zeros({x.size(-1)}, at::kDouble), 0, weights};
    it->second.sums.add_(flat.square().sum(0));
    it->second.rows += flat.size(0);
  });
  {
    c10::InferenceMode guard;
    const int64_t per_forward = std::max<int64_t>(1, options.chunks_per_forward);
    std::vector<int32_t> ids;
    for (size_t c0 = 0; c0 < chunks.size(); c0 += static_cast<size_t>(per_forward)) {
      const size_t n = std::min(chunks.size() - c0, static_cast<size_t>(per_forward));
      ids.clear();
      for (size_t c = c0; c < c0 + n; ++c) {
        const auto& [s, t] = chunks[c];
        ids.insert(ids.end(), sources[s].begin() + t, sources[s].begin() + t + options.chunk);
        if (options.bos) ids[ids.size() - static_cast<size_t>(options.chunk)] = *options.bos;
      }
      auto batch = at::from_blob(ids.data(), {static_cast<int64_t>(n), options.chunk}, at::kInt).to(at::kLong);
      at::Tensor hidden = model.hidden_states(batch);
      // The observer sees the LM head's input on the first vocabulary slice: one id is enough.
      if (options.process_output) model.lm_head(hidden, 0, 1);
      if (progress) progress(static_cast<int64_t>(c0 + n), static_cast<int64_t>(chunks.size()));
    }
  }
  model.set_input_observer({});

  std::map<std::string, ColumnSquares> by_hf;
  for (const auto& [_, a] : by_input) {
    at::Tensor s = a.sums.contiguous();
    ColumnSquares c{std::vector<double>(s.data_ptr<double>(), s.data_ptr<double>() + s.numel()), a.rows};
    for (const auto& w : a.weights) by_hf[w] = c;
  }
  Imatrix m = imatrix_from_columns(config, by_hf);
  m.datasets = dataset_names;
  m.chunk_count = static_cast<int64_t>(chunks.size());
  m.chunk_size = options.chunk;
  return m;
}

}  // namespace anvil::quant
