#pragma once
// Activation statistics for calibrated quantization: the inference kernel runs over calibration
// text and, for every linear weight, accumulates H = sum over tokens of x x^T of the layer's input
// (GPTQ's Hessian; its diagonal is llama.cpp's importance matrix).
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "quant/imatrix_file.h"

namespace anvil::model {
class Transformer;
struct ModelConfig;
}

namespace anvil::quant {

struct Calibration {
  std::map<std::string, at::Tensor> hessian;  // weight name -> [in, in] fp64 (shared by q/k/v)
  std::map<std::string, int64_t> rows;        // weight name -> inputs seen (an expert: its tokens)
  int64_t tokens = 0;
  const at::Tensor* find(const std::string& weight_name) const {
    auto it = hessian.find(weight_name);
    return it == hessian.end() ? nullptr : &it->second;
  }
};

// The calibration windows: `window` consecutive tokens each, taken from the sources in turn (the
// first window of each source, then the second of each, ...), at most max_tokens in all. Taking
// them in turn makes any budget cover every source, so that a user who passes several kinds of
// text gets statistics of all of them, not of the first file alone.
std::vector<int32_t> interleave_windows(const std::vector<std::vector<int32_t>>& sources, int64_t window,
                                        int64_t max_tokens);

// Runs windows of `window` tokens from `tokens` (at most max_tokens in all) through the model.
Calibration calibrate(model::Transformer& model, const std::vector<int32_t>& tokens, int64_t window,
                      int64_t max_tokens, const std::function<void(int64_t done, int64_t total)>& progress = {});

// llama.cpp's importance matrix: per weight, the sum of each input column's squared activation
// (the Hessian's diagonal) and the inputs seen, under GGUF names (Imatrix::importance() gives
// the mean squared activations the k-quant encoders weight their errors with).
Imatrix imatrix_of(const Calibration& calibration, const model::ModelConfig& config);

}  // namespace anvil::quant
