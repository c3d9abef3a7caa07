// config.json in both spellings, family defaults, and clear errors for what we cannot run.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "model/config.h"
#include "test_support.h"
#include "util/error.h"

using namespace anvil;
using model::ModelConfig;

TEST(Config, BaseUsesNewerSpellings) {
  auto c = ModelConfig::load(test::model_dir("base"));
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.hidden_size, 256);
  EXPECT_EQ(c.num_layers, 8);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab_size, 4096);
  EXPECT_DOUBLE_EQ(c.rope.theta, 10000.0);
  EXPECT_EQ(c.dtype, "bfloat16");
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{1});
}

TEST(Config, OlderSpellingsGiveTheSameConfig) {
  auto text = io::read_text_file(test::model_dir("base") / "config.json");
  auto j = nlohmann::json::parse(text);
  j.erase("rope_parameters");
  j["rope_theta"] = 10000.0;
  j.erase("dtype");
  j["torch_dtype"] = "bfloat16";
  j.erase("head_dim");  // derived as hidden_size / num_attention_heads
  auto older = ModelConfig::parse(j.dump(), "older");
  auto newer = ModelConfig::parse(text, "newer");
  EXPECT_EQ(older.dtype, newer.dtype);
  EXPECT_DOUBLE_EQ(older.rope.theta, newer.rope.theta);
  EXPECT_EQ(older.head_dim, newer.head_dim);
}

TEST(Config, Llama3RopeScalingInOlderSpelling) {
  auto j = nlohmann::json::parse(io::read_text_file(test::model_dir("base") / "config.json"));
  j.erase("rope_parameters");
  j["rope_theta"] = 500000.0;
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 32.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  auto c = ModelConfig::parse(j.dump(), "llama3");
  EXPECT_EQ(c.rope.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope.factor, 32.0);
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
}

TEST(Config, Qwen2AndMixtralFamilies) {
  auto q = ModelConfig::load(test::model_dir("tiny-qwen2"));
  EXPECT_TRUE(q.attention_bias);
  EXPECT_TRUE(q.tie_word_embeddings);
  EXPECT_EQ(q.head_dim, 16);
  EXPECT_FALSE(q.sliding_window.has_value());
  auto m = ModelConfig::load(test::model_dir("tiny-mixtral"));
  EXPECT_EQ(m.num_experts, 4);
  EXPECT_EQ(m.num_experts_per_tok, 2);
  EXPECT_EQ(m.head_dim, 16);  // "head_dim": null -> hidden / heads
}

TEST(Config, UnknownArchitectureIsAClearError) {
  auto j = nlohmann::json::parse(io::read_text_file(test::model_dir("base") / "config.json"));
  j["model_type"] = "gpt_neox";
  try {
    ModelConfig::parse(j.dump(), "x/config.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "x/config.json: unsupported architecture 'gpt_neox' (supported: llama, mistral, qwen2, mixtral, qwen3, gemma, gemma2, gemma3_text, phi3, phi, qwen2_moe, deepseek, minicpm)");
  }
}

TEST(Config, BrokenAndIncompleteJson) {
  EXPECT_THROW(ModelConfig::parse("{\"model_type\": ", "c"), Error);
  EXPECT_THROW(ModelConfig::parse(R"({"model_type":"llama"})", "c"), Error);
  EXPECT_THROW(ModelConfig::parse(R"({"model_type":"llama","hidden_size":64,"intermediate_size":8,)"
                                  R"("num_hidden_layers":1,"num_attention_heads":3,"num_key_value_heads":2,"vocab_size":8})",
                                  "c"),
               Error);  // heads not a multiple of kv heads
}
