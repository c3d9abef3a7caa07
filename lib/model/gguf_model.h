#pragma once
// A llama.cpp GGUF as an anvil model: config from metadata, weights dequantized to the compute
// dtype with llama.cpp's names and interleaved rotary rows mapped back to Hugging Face's.
#include <ATen/ATen.h>

#include <filesystem>
#include <memory>

#include "io/gguf.h"
#include "model/gguf_tensors.h"
#include "model/transformer.h"

namespace anvil::model {

std::unique_ptr<Transformer> load_gguf_transformer(const io::GgufFile& gguf, const LoadOptions& options = {});

}  // namespace anvil::model
