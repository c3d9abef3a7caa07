#pragma once
// ggml's type table, indexed by the GGUF tensor type id (enum ggml_type in ggml.h): the name
// llama.cpp prints and the block geometry, each size taken from its block struct
// (io/ggml_blocks.h). The GGUF reader walks files with it; quant/quant_types.h adds encoders to
// the rows anvil can compute. One table, one place to add a type.
#include <cstdint>
#include <string_view>

namespace anvil::ggml {

struct TypeInfo {
  std::string_view name;     // "" for ids ggml does not define (or that are retired)
  uint32_t block_elements = 0;
  uint32_t block_bytes = 0;
};

// nullptr for an id outside the table or not defined.
const TypeInfo* type_info(uint32_t id);

}  // namespace anvil::ggml
