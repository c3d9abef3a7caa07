#pragma once
// A llama.cpp GGUF as an anvil model: config from metadata, llama.cpp's names and interleaved
// rotary rows mapped back to Hugging Face's. On CPU in fp32 the matrices stay in their blocks in
// the file's map (model/weight_matrix.h); otherwise they are dequantized to the compute dtype.
#include <ATen/ATen.h>

#include <filesystem>
#include <memory>

#include "io/gguf.h"
#include "model/gguf_tensors.h"
#include "model/transformer.h"

namespace anvil::model {

std::unique_ptr<Transformer> load_gguf_transformer(std::shared_ptr<const io::GgufFile> gguf,
                                                   const LoadOptions& options = {});
// Opens its own handle on the file (by path) for the model to keep.
std::unique_ptr<Transformer> load_gguf_transformer(const io::GgufFile& gguf, const LoadOptions& options = {});

}  // namespace anvil::model
