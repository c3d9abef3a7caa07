// Every quant type against ggml itself: refs/quant/ggml_vectors.safetensors holds 187 rows of 512
// floats (edge cases, random, real weights), the block bytes ggml's reference encoders wrote for
// each type, and ggml's dequantization of those bytes. Both must match exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "io/gguf.h"
#include "io/safetensors.h"
#include "quant/quant_math.h"
#include "quant/quant_mix.h"
#include "quant/quant_types.h"
#include "quant/scale_search.h"
#include "test_support.h"
#include "util/error.h"

using namespace anvil;

namespace {

struct Vectors {
  io::SafetensorsFile file{test::shared_dir() / "refs" / "quant" / "ggml_vectors.safetensors"};
  const float* input() const { return reinterpret_cast<const float*>(file.find("input")->bytes.data()); }
};

class QuantTypeTest : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(QuantTypeTest, BytesAndDequantizationMatchGgml) {
  static Vectors v;
  const std::string key = GetParam();  // e.g. q4_K
  const quant::QuantType* type = quant::find_quant_type(key);
  ASSERT_NE(type, nullptr) << key;
  const auto* expected_bytes = v.file.find(key + ".quantized");
  const auto* expected_floats = v.file.find(key + ".dequantized");
  ASSERT_TRUE(expected_bytes && expected_floats);
  const int64_t rows = expected_bytes->spec.shape[0], n = 512;
  const int64_t row_bytes = type->row_bytes(n);
  ASSERT_EQ(row_bytes, expected_bytes->spec.shape[1]);
  std::vector<uint8_t> got(row_bytes);
  std::vector<float> back(n);
  int bad_rows = 0;
  for (int64_t r = 0; r < rows; ++r) {
    type->encode(v.input() + r * n, got.data(), n);
    const uint8_t* want = expected_bytes->bytes.data() + r * row_bytes;
    if (std::memcmp(got.data(), want, row_bytes) != 0) {
      if (++bad_rows <= 3) {
        int64_t at = 0;
        while (got[at] == want[at]) ++at;
        ADD_FAILURE() << key << " row " << r << ": first differing byte " << at << " (block " << at / type->block_bytes
                      << "): got " << int(got[at]) << ", ggml " << int(want[at]);
      }
    }
    type->decode(want, back.data(), n);
    const float* want_f = reinterpret_cast<const float*>(expected_floats->bytes.data()) + r * n;
    ASSERT_EQ(0, std::memcmp(back.data(), want_f, n * sizeof(float))) << key << " dequantization differs, row " << r;
  }
  EXPECT_EQ(bad_rows, 0) << key << ": rows whose bytes differ from ggml";
}

INSTANTIATE_TEST_SUITE_P(Ggml, QuantTypeTest,
                         ::testing::Values("q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl", "q2_K", "q3_K", "q4_K",
                                           "q5_K", "q6_K"));

// The k-quant scale searches run 16 sub-blocks per SIMD call, built for each instruction set. Every
// build must give ggml's bytes, with all 187 rows encoded in one call (so that calls span rows and
// the last call has empty lanes) and with single super-blocks (the GPTQ path's calls).
TEST(QuantTypes, EveryScaleSearchBuildMatchesGgml) {
  Vectors v;
  const int64_t n = 512;
  for (auto isa : quant::scale_search_isas()) {
    quant::force_scale_search_isa(isa);
    for (const std::string key : {"q2_K", "q4_K", "q5_K", "q6_K"}) {
      const quant::QuantType* type = quant::find_quant_type(key);
      const auto* expected = v.file.find(key + ".quantized");
      const int64_t rows = expected->spec.shape[0] - 1;  // odd: 373 super-blocks
      std::vector<uint8_t> all(static_cast<size_t>(type->row_bytes(rows * n)));
      type->encode(v.input(), all.data(), rows * n);
      EXPECT_EQ(0, std::memcmp(all.data(), expected->bytes.data(), all.size())) << isa << " " << key;
      std::vector<uint8_t> one(type->block_bytes);
      for (int64_t b = 0; b < 2 * rows; b += 37) {
        type->encode(v.input() + b * 256, one.data(), 256);
        EXPECT_EQ(0, std::memcmp(one.data(), expected->bytes.data() + b * type->block_bytes, one.size()))
            << isa << " " << key << " block " << b;
      }
    }
  }
  quant::force_scale_search_isa("");
  EXPECT_THROW(quant::force_scale_search_isa("sse9"), Error);
}

// Q8_0 rounds with roundf semantics (ties away from zero) without calling roundf.
TEST(QuantTypes, RoundHalfAwayIsRoundf) {
  std::vector<float> xs = {0.f, -0.f, 0.5f, -0.5f, 1.5f, -1.5f, 2.5f, -2.5f, 126.5f, -126.5f, 127.f, -127.f,
                           0.49999997f, -0.49999997f, 0.50000006f, 1.4999999f, 8388607.5f, -8388607.f};
  for (int i = -130000; i <= 130000; ++i) xs.push_back(static_cast<float>(i) / 1024.f);  // every tie up to 127
  for (float x : xs) ASSERT_EQ(quant::round_half_away(x), static_cast<int>(std::round(x))) << x;
}

// ggml's type table as ggml-common.h and ggml.c define it (id, name, elements and bytes per
// block), written out here from ggml's sources: the one table anvil has must agree with it.
TEST(QuantTypes, TableIsGgmls) {
  struct Row {
    uint32_t id;
    const char* name;
    uint32_t elements, bytes;
  };
  const Row ggml[] = {{0, "F32", 1, 4},        {1, "F16", 1, 2},          {2, "Q4_0", 32, 18},    {3, "Q4_1", 32, 20},
                      {6, "Q5_0", 32, 22},     {7, "Q5_1", 32, 24},       {8, "Q8_0", 32, 34},    {9, "Q8_1", 32, 36},
                      {10, "Q2_K", 256, 84},   {11, "Q3_K", 256, 110},    {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176},
                      {14, "Q6_K", 256, 210},  {15, "Q8_K", 256, 292},    {16, "IQ2_XXS", 256, 66},
                      {17, "IQ2_XS", 256, 74}, {18, "IQ3_XXS", 256, 98},  {20, "IQ4_NL", 32, 18},
                      {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},      {26, "I32", 1, 4},
                      {27, "I64", 1, 8},       {28, "F64", 1, 8},         {30, "BF16", 1, 2}};
  for (const Row& r : ggml) {
    auto size = io::ggml_type_size(r.id);
    ASSERT_TRUE(size) << r.name;
    EXPECT_EQ(std::string(size->name), r.name);
    EXPECT_EQ(size->block_elements, r.elements) << r.name;
    EXPECT_EQ(size->block_bytes, r.bytes) << r.name;
  }
  for (uint32_t unknown : {4u, 5u, 19u, 31u, 1000u}) EXPECT_FALSE(io::ggml_type_size(unknown)) << unknown;
  for (const auto& t : quant::quant_types()) {  // the codec rows are rows of the same table
    EXPECT_EQ(t.name, std::string(io::ggml_type_size(t.ggml_type)->name));
    EXPECT_EQ(t.row_bytes(t.block_elements), static_cast<int64_t>(io::ggml_type_size(t.ggml_type)->block_bytes));
  }
}

// llama-quantize's extra rules for 8-expert models (Mixtral-8x7B), read from llama.cpp's
// llama_tensor_get_type: attn_v and attn_k in Q8_0 for every type, attn_output in Q5_K for the
// low-bit mixes, the router (ffn_gate_inp) never quantized, stacked ffn_down_exps bumped by layer
// like ffn_down.
TEST(QuantMix, EightExpertModelsFollowLlamaQuantize) {
  const quant::MixContext moe{32, 32, 8, false, 8}, four{32, 32, 8, false, 4};
  const quant::QuantType* f32 = quant::find_quant_type("F32");
  auto pick = [&](const char* mix, const quant::MixContext& ctx, const std::string& name, size_t dims = 2) {
    return std::string(quant::choose_tensor_type(*quant::find_quant_mix(mix), ctx, name, 4096, dims, f32)->name);
  };
  EXPECT_EQ(pick("Q4_K_M", moe, "blk.5.attn_v.weight"), "Q8_0");
  EXPECT_EQ(pick("Q4_K_M", moe, "blk.5.attn_k.weight"), "Q8_0");
  EXPECT_EQ(pick("Q4_K_M", moe, "blk.5.attn_q.weight"), "Q4_K");
  EXPECT_EQ(pick("Q4_K_M", moe, "blk.5.attn_output.weight"), "Q5_K");
  EXPECT_EQ(pick("Q4_K_M", moe, "blk.5.ffn_gate_inp.weight"), "F32");
  EXPECT_EQ(pick("Q4_K_M", moe, "blk.0.ffn_down_exps.weight", 3), "Q6_K");  // use_more_bits(0, 32)
  EXPECT_EQ(pick("Q4_K_M", moe, "blk.5.ffn_down_exps.weight", 3), "Q4_K");
  EXPECT_EQ(pick("Q4_K_M", moe, "blk.5.ffn_gate_exps.weight", 3), "Q4_K");
  EXPECT_EQ(pick("Q6_K", moe, "blk.5.attn_v.weight"), "Q8_0");
  EXPECT_EQ(pick("Q6_K", moe, "blk.5.attn_output.weight"), "Q6_K");
  EXPECT_EQ(pick("Q2_K", moe, "blk.5.attn_output.weight"), "Q5_K");
  // Four experts: the dense rules.
  EXPECT_EQ(pick("Q4_K_M", four, "blk.5.attn_v.weight"), "Q4_K");
  EXPECT_EQ(pick("Q4_K_M", four, "blk.5.attn_k.weight"), "Q4_K");
  EXPECT_EQ(pick("Q4_K_M", four, "blk.5.attn_output.weight"), "Q4_K");
  EXPECT_EQ(pick("Q2_K", four, "blk.5.attn_output.weight"), "Q3_K");
}


// The rules on the new families' tensors, read from llama_tensor_get_type: Phi-3's fused attn_qkv
// takes attn_v's rules (its own ATTENTION_QKV branch comes after category_is_attn_v and is never
// reached), shared experts are ffn_* tensors like any other, and a [n, 1] tensor (Qwen2-MoE's
// shared-expert gate) is 1-D to ggml and stays as it is. bench/interop.py compares whole files
// with llama-quantize for all nine families.
TEST(QuantMix, FamilyTensorsFollowLlamaQuantize) {
  const quant::MixContext phi3{32, 32, 32, false, 0}, qwen_moe{24, 16, 16, false, 60};
  const quant::QuantType* f32 = quant::find_quant_type("F32");
  auto pick = [&](const char* mix, const quant::MixContext& ctx, const std::string& name, std::vector<uint64_t> dims) {
    return std::string(quant::choose_tensor_type(*quant::find_quant_mix(mix), ctx, name, static_cast<int64_t>(dims[0]),
                                                 quant::ggml_dimension_count(dims), f32)->name);
  };
  EXPECT_EQ(pick("Q4_K_M", phi3, "blk.0.attn_qkv.weight", {3072, 9216}), "Q6_K");   // use_more_bits(0, 32)
  EXPECT_EQ(pick("Q4_K_M", phi3, "blk.5.attn_qkv.weight", {3072, 9216}), "Q4_K");
  EXPECT_EQ(pick("Q4_K_M", phi3, "blk.6.attn_qkv.weight", {3072, 9216}), "Q6_K");   // (6 - 4) % 3 == 2
  EXPECT_EQ(pick("Q3_K_M", phi3, "blk.1.attn_qkv.weight", {3072, 9216}), "Q5_K");   // layer < 2
  EXPECT_EQ(pick("Q4_K_M", phi3, "blk.0.ffn_up.weight", {3072, 16384}), "Q4_K");    // fused gate_up: ffn_up
  EXPECT_EQ(pick("Q4_K_M", qwen_moe, "blk.0.ffn_down_shexp.weight", {5632, 2048}), "Q6_K");
  EXPECT_EQ(pick("Q4_K_M", qwen_moe, "blk.4.ffn_down_shexp.weight", {5632, 2048}), "Q4_K");
  EXPECT_EQ(pick("Q4_K_M", qwen_moe, "blk.4.ffn_gate_inp_shexp.weight", {2048, 1}), "F32");
  EXPECT_EQ(pick("Q4_K_M", qwen_moe, "blk.4.ffn_gate_inp.weight", {2048, 60}), "F32");
  EXPECT_EQ(quant::ggml_dimension_count({64, 1}), 1u);
  EXPECT_EQ(quant::ggml_dimension_count({64, 1, 4}), 3u);
  EXPECT_EQ(quant::ggml_dimension_count({1}), 1u);
}
