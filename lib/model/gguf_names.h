#pragma once
// Hugging Face <-> llama.cpp tensor names (llama.cpp's tensor_mapping for the dense families).
#include <optional>
#include <string>

namespace anvil::model {

std::optional<std::string> hf_to_gguf_name(const std::string& hf_name);
std::optional<std::string> gguf_to_hf_name(const std::string& gguf_name);

}  // namespace anvil::model
