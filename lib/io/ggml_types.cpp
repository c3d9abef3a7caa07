#include "io/ggml_types.h"

#include <array>

#include "io/ggml_blocks.h"

namespace anvil::ggml {
namespace {

template <typename Block>
constexpr TypeInfo blocks(std::string_view name, uint32_t elements) {
  return {name, elements, static_cast<uint32_t>(sizeof(Block))};
}
template <typename Scalar>
constexpr TypeInfo scalar(std::string_view name) {
  return {name, 1, static_cast<uint32_t>(sizeof(Scalar))};
}

// Position = ggml_type id. Ids 4 and 5 (Q4_2, Q4_3) were removed from ggml; 19 (IQ1_S), 21
// (IQ3_S), 22 (IQ2_S), 29 (IQ1_M) and 31+ (the repacked and ternary types, MXFP4) are left out
// (their blocks are not declared here), so a file holding them is refused by id rather than misread.
constexpr std::array<TypeInfo, 31> kTypes{{
    /* 0 */ scalar<float>("F32"),
    /* 1 */ scalar<uint16_t>("F16"),
    /* 2 */ blocks<BlockQ4_0>("Q4_0", kQK),
    /* 3 */ blocks<BlockQ4_1>("Q4_1", kQK),
    /* 4 */ {},
    /* 5 */ {},
    /* 6 */ blocks<BlockQ5_0>("Q5_0", kQK),
    /* 7 */ blocks<BlockQ5_1>("Q5_1", kQK),
    /* 8 */ blocks<BlockQ8_0>("Q8_0", kQK),
    /* 9 */ blocks<BlockQ8_1>("Q8_1", kQK),
    /* 10 */ blocks<BlockQ2_K>("Q2_K", kQK_K),
    /* 11 */ blocks<BlockQ3_K>("Q3_K", kQK_K),
    /* 12 */ blocks<BlockQ4_K>("Q4_K", kQK_K),
    /* 13 */ blocks<BlockQ5_K>("Q5_K", kQK_K),
    /* 14 */ blocks<BlockQ6_K>("Q6_K", kQK_K),
    /* 15 */ blocks<BlockQ8_K>("Q8_K", kQK_K),
    /* 16 */ blocks<BlockIQ2_XXS>("IQ2_XXS", kQK_K),
    /* 17 */ blocks<BlockIQ2_XS>("IQ2_XS", kQK_K),
    /* 18 */ blocks<BlockIQ3_XXS>("IQ3_XXS", kQK_K),
    /* 19 */ {},
    /* 20 */ blocks<BlockIQ4_NL>("IQ4_NL", kQK),
    /* 21 */ {},
    /* 22 */ {},
    /* 23 */ blocks<BlockIQ4_XS>("IQ4_XS", kQK_K),
    /* 24 */ scalar<int8_t>("I8"),
    /* 25 */ scalar<int16_t>("I16"),
    /* 26 */ scalar<int32_t>("I32"),
    /* 27 */ scalar<int64_t>("I64"),
    /* 28 */ scalar<double>("F64"),
    /* 29 */ {},
    /* 30 */ scalar<uint16_t>("BF16"),
}};

}  // namespace

const TypeInfo* type_info(uint32_t id) {
  if (id >= kTypes.size() || kTypes[id].name.empty()) return nullptr;
  return &kTypes[id];
}

}  // namespace anvil::ggml
