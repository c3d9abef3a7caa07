#pragma once
// Hugging Face <-> llama.cpp tensor names for a family, through tensor roles (tensor_role.h):
// the family's Hugging Face templates on one side, llama.cpp's table on the other.
#include <optional>
#include <string>

#include "model/architecture.h"

namespace anvil::model {

std::optional<TensorName> parse_hf_name(const Architecture& arch, const std::string& hf_name);
// Stacked expert tensors parse with expert -1.
std::optional<TensorName> parse_gguf_name(const Architecture& arch, const std::string& gguf_name);
std::string hf_name_of(const Architecture& arch, const TensorName& name);
std::string gguf_name_of(const TensorName& name);  // an expert's name is its layer's stack

}  // namespace anvil::model
