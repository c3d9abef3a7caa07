#pragma once
// One input model of a merge, whatever holds it: a safetensors checkpoint (bf16/f16/f32, read in
// place), a llama.cpp GGUF of any type anvil decodes, or an INT4/INT8 safetensors
// (compressed-tensors, GPTQ). The merge sees Hugging Face names and shapes only; quantized
// tensors are decoded to fp32 a few rows at a time as the merge streams, never whole.
#include <ATen/ATen.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/config.h"

namespace anvil::merge {

class MergeSource {
 public:
  virtual ~MergeSource() = default;
  // Opens and validates (headers, shapes, quantization layout) before any work.
  static std::unique_ptr<MergeSource> open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  const model::ModelConfig& config() const { return config_; }
  // Hugging Face tensor names in file order.
  const std::vector<std::string>& names() const { return names_; }
  // The tensor's Hugging Face shape, or nullptr when the model has no such tensor.
  virtual const std::vector<int64_t>* shape(const std::string& name) const = 0;
  // The stored bytes of a tensor kept as plain f32/f16/bf16 in Hugging Face's layout (the block
  // kernels read these in place), or nullptr when it must be decoded.
  virtual const io::TensorView* plain(const std::string& name) const = 0;
  // Rows [row0, row0 + rows) along the first dimension as fp32 (a 0-D or 1-D tensor: its elements).
  virtual at::Tensor read_rows(const std::string& name, int64_t row0, int64_t rows) const = 0;
  // Drops the pages behind those rows from memory (they were read once).
  virtual void release_rows(const std::string& name, int64_t row0, int64_t rows) const = 0;
  virtual uint64_t stored_bytes(const std::string& name) const = 0;
  // "safetensors", "GGUF", "compressed-tensors INT4", ...: for messages and the model card.
  virtual std::string format() const = 0;

  // config.json of the merged model, before the merge's own changes (layers, dtype).
  virtual nlohmann::ordered_json hf_config() const = 0;
  // Writes the tokenizer files (tokenizer.json, tokenizer_config.json, ...) into `dir`.
  virtual void write_tokenizer_files(const std::filesystem::path& dir) const = 0;

 protected:
  std::filesystem::path path_;
  model::ModelConfig config_;
  std::vector<std::string> names_;
};

}  // namespace anvil::merge
