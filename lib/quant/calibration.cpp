#include "quant/calibration.h"

#include <c10/core/InferenceMode.h>

#include "model/transformer.h"
#include "quant/imatrix_collect.h"
#include "util/error.h"

namespace anvil::quant {

std::vector<int32_t> interleave_windows(const std::vector<std::vector<int32_t>>& sources, int64_t window,
                                        int64_t max_tokens) {
  if (window <= 0) fail("calibration", "the window must be at least one token");
  std::vector<int32_t> out;
  for (int64_t w = 0;; ++w) {
    bool any = false;
    for (const auto& s : sources) {
      if ((w + 1) * window > static_cast<int64_t>(s.size())) continue;
      if (static_cast<int64_t>(out.size()) + window > max_tokens) return out;
      out.insert(out.end(), s.begin() + w * window, s.begin() + (w + 1) * window);
      any = true;
    }
    if (!any) return out;
  }
}

Calibration calibrate(model::Transformer& model, const std::vector<int32_t>& tokens, int64_t window,
                      int64_t max_tokens, const std::function<void(int64_t, int64_t)>& progress) {
  const int64_t usable = std::min<int64_t>(static_cast<int64_t>(tokens.size()), max_tokens);
  const int64_t windows = usable / window;
  if (windows == 0)
    fail("calibration", "needs at least one window of " + std::to_string(window) + " tokens, the text has " +
                            std::to_string(tokens.size()));
  Calibration cal;
  std::map<std::string, at::Tensor> by_first_weight;  // one accumulator per distinct input
  model.set_input_observer([&](const std::vector<std::string>& weights, const at::Tensor& x) {
    at::Tensor flat = x.reshape({-1, x.size(-1)}).to(at::kFloat);
    auto it = by_first_weight.find(weights.front());
    if (it == by_first_weight.end()) {
      at::Tensor h = at::zeros({x.size(-1), x.size(-1)}, at::kDouble);
      it = by_first_weight.emplace(weights.front(), h).first;
      for (const auto& w : weights) cal.hessian[w] = h;
    }
    // Each batch's product in fp32 (BLAS), the running sum in fp64.
    it->second.add_(at::matmul(flat.t(), flat).to(at::kDouble));
    for (const auto& w : weights) cal.rows[w] += flat.size(0);
  });
  {
    c10::InferenceMode guard;
    // Several windows per forward: bigger GEMMs, and H's products sum more tokens at once.
    const int64_t batch = 8;
    for (int64_t w = 0; w < windows; w += batch) {
      const int64_t n = std::min(batch, windows - w);
      auto ids = at::from_blob(const_cast<int32_t*>(tokens.data() + w * window), {n, window}, at::kInt).to(at::kLong);
      model.forward(ids);
      if (progress) progress(w + n, windows);
    }
  }
  model.set_input_observer({});
  cal.tokens = windows * window;
  return cal;
}

Imatrix imatrix_of(const Calibration& calibration, const model::ModelConfig& config) {
  std::map<std::string, ColumnSquares> columns;
  for (const auto& [name, h] : calibration.hessian) {
    at::Tensor d = h.diagonal().contiguous();
    auto rows = calibration.rows.find(name);
    columns[name] = {std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel()),
                     rows == calibration.rows.end() ? 0 : rows->second};
  }
  return imatrix_from_columns(config, columns);
}

}  // namespace anvil::quant
