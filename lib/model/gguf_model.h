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

// Dequantizes one GGUF tensor to an fp32 tensor of shape [dims reversed] (row-major).
at::Tensor dequantize_gguf_tensor(const io::GgufTensorInfo& tensor, const std::string& where);

// llama.cpp stores q/k rows of each head interleaved (rotary pairs adjacent); transformers keeps
// the two halves apart. to_gguf selects the direction.
at::Tensor permute_rotary_rows(const at::Tensor& weight, int64_t n_heads, bool to_gguf);

}  // namespace anvil::model
