#pragma once
// The tensors a family's config implies, with their Hugging Face names and shapes, checked
// against a checkpoint before anything reads it. Every reader (safetensors directory, GGUF) runs
// this first, so arithmetic that trusts the config (the rotary row permutation, row lengths,
// expert slicing) never meets a tensor that disagrees with it. No LibTorch.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "model/config.h"

namespace anvil::io {
class Checkpoint;
}

namespace anvil::model {

struct ExpectedTensor {
  std::string name;             // Hugging Face name
  std::vector<int64_t> shape;
  bool required = true;         // false: may be absent (biases without attention_bias, a tied lm_head)
};

std::vector<ExpectedTensor> expected_tensors(const ModelConfig& config);

// The shape of a tensor by its Hugging Face name, or nullopt when the checkpoint lacks it.
using ShapeLookup = std::function<std::optional<std::vector<int64_t>>(const std::string& hf_name)>;

// Throws anvil::Error(where, "tensor 'X' ...") for a missing required tensor, a shape that
// disagrees with the config (`config_name` says which: "config.json", "the GGUF metadata"), or a
// tensor in `present` (the checkpoint's Hugging Face names) that the family does not have: a
// layer past num_layers, "layers.01", an expert past the expert count (writers would carry it
// into the output, readers would trust its rows).
void check_tensor_shapes(const ModelConfig& config, const ShapeLookup& shape_of, const std::vector<std::string>& present,
                         const std::string& where, const std::string& config_name);

// check_tensor_shapes over a safetensors checkpoint (single file or sharded directory).
void check_checkpoint_shapes(const ModelConfig& config, const io::Checkpoint& checkpoint, const std::string& where);

std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace anvil::model
