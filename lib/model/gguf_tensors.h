#pragma once
// GGUF tensors in Hugging Face terms, without LibTorch: recognising a GGUF file, listing the
// Hugging Face tensors it holds and dequantizing one of them into Hugging Face's layout. The light
// anvil front end (convert, quantize) and the GGUF model loader use these.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "model/config.h"

namespace anvil::model {

bool is_gguf_file(const std::filesystem::path& path);

struct HfTensor {
  std::vector<float> values;  // row-major
  std::vector<int64_t> shape;
};

struct HfTensorEntry {
  std::string name;
  std::vector<int64_t> shape;
};
// The Hugging Face tensors a GGUF holds, in file order (a stacked expert tensor gives one per
// expert). Fails naming the file for a tensor with no Hugging Face name in the family.
std::vector<HfTensorEntry> gguf_hf_tensors(const io::GgufFile& gguf, const ModelConfig& config);

// Every tensor the GGUF's metadata implies, checked for presence and shape (before anything
// permutes or slices rows by that metadata); an anvil::Error naming the file and tensor.
void check_gguf_shapes(const io::GgufFile& gguf, const ModelConfig& config);

bool gguf_has_hf_tensor(const io::GgufFile& gguf, const ModelConfig& config, const std::string& hf_name);

// Dequantizes the tensor Hugging Face calls `hf_name`, undoing the converter's value transforms
// (tensor_transforms.h) and cutting an expert's slice out of llama.cpp's stacked tensor.
HfTensor read_gguf_hf_tensor(const io::GgufFile& gguf, const ModelConfig& config, const std::string& hf_name);

// Where the matrix Hugging Face calls `hf_name` lies in the GGUF, for computing from it in place:
// its ggml type, first byte and Hugging Face shape, and for q/k the stored row holding each
// Hugging Face row. nullopt when the tensor is not a matrix, or its values need more than a row
// order to become Hugging Face's (Gemma's norm offset).
struct GgufMatrixView {
  uint32_t ggml_type = 0;
  const uint8_t* data = nullptr;
  int64_t rows = 0, cols = 0;
  std::vector<int32_t> row_order;  // empty: the stored order
};
std::optional<GgufMatrixView> gguf_matrix_view(const io::GgufFile& gguf, const ModelConfig& config,
                                               const std::string& hf_name);

}  // namespace anvil::model
