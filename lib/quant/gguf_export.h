#pragma once
// Writing GGUF: a Hugging Face model directory (safetensors) or an existing GGUF, re-encoded with
// a llama.cpp file type (F32/F16/BF16, Q8_0, ..., Q4_K_M). Tensor names, the q/k rotary layout,
// hyperparameter keys and the tokenizer metadata follow llama.cpp's converter, so llama.cpp and
// Ollama load the result; quantized tensors are byte-identical to llama-quantize's.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "io/safetensors.h"
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
  std::string name;             // general.name (default: the input's directory or file name)
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

// A Hugging Face model written to GGUF tensor by tensor, as each becomes available: a one-pass
// `anvil merge -o OUT.gguf` hands over each merged tensor as it is made, export_gguf each tensor
// of a checkpoint. `model_dir` holds config.json, the tokenizer and the card; `tensors` names
// what will come (dtype, Hugging Face shape). Nothing is read until write(); the file appears on
// commit() (temp + rename) and not at all if the stream is destroyed first.
class HfGgufStream {
 public:
  HfGgufStream(const std::filesystem::path& model_dir, const std::vector<io::TensorSpec>& tensors,
               const std::filesystem::path& output, const GgufExportOptions& options);
  ~HfGgufStream();
  // Encodes and writes one tensor from its bytes (its spec's dtype, Hugging Face layout); the
  // bytes need only live for the call. Thread-safe across tensors; rows run in parallel inside.
  void write(const std::string& hf_name, std::span<const uint8_t> bytes);
  GgufExportSummary commit();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

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
