#pragma once
// GGUF tensors in Hugging Face terms, without LibTorch: recognising a GGUF file and dequantizing
// one tensor into Hugging Face's layout. The light anvil front end (convert, quantize) uses these.
#include <filesystem>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "model/config.h"

namespace anvil::model {

bool is_gguf_file(const std::filesystem::path& path);

// Dequantizes one GGUF tensor to row-major floats in Hugging Face's layout (shape = dims reversed;
// q/k rows un-permuted for families whose converter permutes them).
std::vector<float> gguf_tensor_to_hf_floats(const io::GgufTensorInfo& tensor, const ModelConfig& config,
                                            const std::string& hf_name, const std::string& where);

}  // namespace anvil::model
