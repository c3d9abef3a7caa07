#pragma once
// A llama.cpp GGUF as an anvil model: config from metadata, weights dequantized to the compute
// dtype with llama.cpp's names and interleaved rotary rows mapped back to Hugging Face's.
#include <ATen/ATen.h>

#include <filesystem>
#include <memory>

#include "io/gguf.h"
#include "model/transformer.h"

namespace anvil::model {

bool is_gguf_file(const std::filesystem::path& path);

std::unique_ptr<Transformer> load_gguf_transformer(const io::GgufFile& gguf, const LoadOptions& options = {});

// Dequantizes one GGUF tensor to row-major floats in Hugging Face's layout (shape = dims reversed;
// q/k rows un-permuted for families whose converter permutes them).
std::vector<float> gguf_tensor_to_hf_floats(const io::GgufTensorInfo& tensor, const ModelConfig& config,
                                            const std::string& hf_name, const std::string& where);

}  // namespace anvil::model
