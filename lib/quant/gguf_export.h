#pragma once
// Writing GGUF: a Hugging Face model directory (safetensors) or an existing GGUF, re-encoded with
// a llama.cpp file type (F32/F16/BF16, Q8_0, ..., Q4_K_M). Tensor names, the q/k rotary layout,
// hyperparameter keys and the tokenizer metadata follow llama.cpp's converter, so llama.cpp and
// Ollama load the result; quantized tensors are byte-identical to llama-quantize's.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "quant/quant_types.h"

namespace anvil::io {
class GgufFile;
}
namespace anvil::model {
struct ModelConfig;
}

namespace anvil::quant {

// Encodes one tensor (rows x row floats in GGUF layout, `hf_name` its Hugging Face name) to
// `type` in its own way, or returns nothing to leave it to the reference encoder. GPTQ
// (kquant_gptq.h) plugs in here, which keeps this file free of LibTorch.
using TensorEncoder = std::function<std::optional<std::vector<uint8_t>>(
    const std::string& hf_name, const QuantType& type, const float* w, int64_t rows, int64_t row,
    const float* importance)>;

struct GgufExportOptions {
  std::string type = "F16";  // a QuantMix name
  int threads = 1;
  std::function<void(int64_t tensors_done, int64_t tensors_total, uint64_t bytes_in)> progress;
  // An importance matrix (GGUF weight name -> mean squared activation per input column, a 3-D
  // expert stack's matrices one after another: Imatrix::importance()): the k-quant types then
  // weight each element's error by it, and the mixes take llama-quantize's imatrix rules.
  const std::map<std::string, std::vector<float>>* importance = nullptr;
  TensorEncoder encoder;  // HF inputs only
  // With an importance matrix: what llama-quantize records of it (quantize.imatrix.*).
  std::string imatrix_file;     // the file it came from, if any
  std::string imatrix_dataset;  // the calibration text (llama-quantize: the first dataset)
  int64_t imatrix_chunks = 0;   // chunks it was computed on
};

// llama.cpp's general.size_label for a model of `params` parameters ("8.4M", "1.2B"; with experts
// "8x7.2B", each expert's share added to the shared parameters), as gguf-py's size_label().
std::string gguf_size_label(int64_t params, int64_t expert_params, int64_t experts);

struct GgufExportSummary {
  int64_t tensors = 0;
  uint64_t input_bytes = 0;
  uint64_t output_bytes = 0;   // the whole file
  uint64_t tensor_bytes = 0;   // tensor data only
  int64_t parameters = 0;
  double seconds = 0;
  std::vector<std::string> notes;  // what the file cannot say exactly, for the user
  double bits_per_weight() const { return parameters ? 8.0 * static_cast<double>(tensor_bytes) / parameters : 0; }
};

GgufExportSummary export_gguf(const std::filesystem::path& input, const std::filesystem::path& output,
                              const GgufExportOptions& options);

// What a Hugging Face directory needs beside config.json and the tensors, from a GGUF's metadata,
// after checking that the GGUF can be described that way (shapes, vocabulary, chat template).
struct HfFilesFromGguf {
  std::string tokenizer_json;
  std::string tokenizer_config_json;
};
HfFilesFromGguf hf_files_from_gguf(const io::GgufFile& gguf, const model::ModelConfig& config);

// GGUF -> Hugging Face directory (config.json, tokenizer.json, safetensors), dequantized to
// `dtype` ("f32", "bf16" or "f16").
void export_hf_from_gguf(const std::filesystem::path& gguf, const std::filesystem::path& out_dir,
                         const std::string& dtype);

}  // namespace anvil::quant
