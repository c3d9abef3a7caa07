#pragma once
// Writing GGUF: a Hugging Face model directory (safetensors) or an existing GGUF, re-encoded with
// a llama.cpp file type (F32/F16/BF16, Q8_0, ..., Q4_K_M). Tensor names, the q/k rotary layout,
// hyperparameter keys and the tokenizer metadata follow llama.cpp's converter, so llama.cpp and
// Ollama load the result; quantized tensors are byte-identical to llama-quantize's.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <vector>
#include <string>

namespace anvil::quant {

struct Calibration;

struct GgufExportOptions {
  std::string type = "F16";  // a QuantMix name
  int threads = 1;
  std::function<void(int64_t tensors_done, int64_t tensors_total, uint64_t bytes_in)> progress;
  // An importance matrix (HF weight name -> mean squared activation per input column, from
  // calibrate()): k-quant types then weight each element's error by it, as llama.cpp's --imatrix.
  const std::map<std::string, std::vector<float>>* importance = nullptr;
  // Hessians from calibrate(): k-quant tensors are then encoded with GPTQ's error compensation on
  // the grid the (importance-weighted) reference encoder chose.
  const Calibration* gptq = nullptr;
  double damp = 0.01;  // GPTQ dampening (fraction of the Hessian's mean diagonal)
};

struct GgufExportSummary {
  int64_t tensors = 0;
  uint64_t input_bytes = 0;
  uint64_t output_bytes = 0;   // the whole file
  uint64_t tensor_bytes = 0;   // tensor data only
  int64_t parameters = 0;
  double seconds = 0;
  double bits_per_weight() const { return parameters ? 8.0 * static_cast<double>(tensor_bytes) / parameters : 0; }
};

GgufExportSummary export_gguf(const std::filesystem::path& input, const std::filesystem::path& output,
                              const GgufExportOptions& options);

// GGUF -> Hugging Face directory (config.json, tokenizer.json, safetensors), dequantized to
// `dtype` ("f32", "bf16" or "f16").
void export_hf_from_gguf(const std::filesystem::path& gguf, const std::filesystem::path& out_dir,
                         const std::string& dtype);

}  // namespace anvil::quant
