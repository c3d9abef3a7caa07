// anvil moe against identities that pin its layout and routing down: a MoE whose only expert is a
// model (or whose experts are all that model) computes that model's logits through anvil's
// Mixtral path; experts' weights are the sources' bytes; router rows are what the config's
// gate mode defines, computed by hand; bad configs fail before anything is written.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "merge/moe_merge.h"
#include "model/tensor_bridge.h"
#include "model/transformer.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "torch_support.h"
#include "util/error.h"

using namespace anvil;

namespace {

std::string m(const std::string& name) { return test::model_dir(name).string(); }

std::filesystem::path build(const test::TempDir& dir, const std::string& yaml, const std::string& name = "moe") {
  io::write_text_file(dir / (name + ".yaml"), yaml);
  merge::run_moe(merge::MoeConfig::load(dir / (name + ".yaml")), dir / name, {});
  return dir / name;
}

// In fp64 from expanded weights. The MoE is written in bf16 like its source, so both declare the
// same dtype: a bf16 checkpoint's rotary frequencies are rounded to bf16 as transformers rounds
// them when it loads a model in its own dtype (rope_inverse_frequencies). An fp32 copy of the
// same values therefore differs from the bf16 original by up to 4e-3 at later positions (exactly
// 0 at position 0): what session 10 took for a Mixtral-path bug; the Mixtral and Llama paths agree.
at::Tensor logits(const std::filesystem::path& model) {
  model::LoadOptions o;
  o.compute_dtype = at::kDouble;
  o.keep_stored = false;
  auto t = model::Transformer::load(model, o);
  return t->forward(at::arange(5, 69, at::kLong).unsqueeze(0));
}

}  // namespace

TEST(Moe, ExpertsThatAreAllTheModelGiveTheModel) {
  c10::InferenceMode guard;
  test::TempDir dir;
  const auto ref = logits(test::model_dir("ft-fortune"));
  // One expert (the router's softmax over one row is 1), and two identical experts with top 2
  // (weights summing to 1): both must be ft-fortune itself, through the sparse MLP code.
  auto one = build(dir, "base_model: " + m("ft-fortune") + "\ngate_mode: random\nexperts_per_token: 1\ndtype: bfloat16\n"
                        "experts:\n  - source_model: " + m("ft-fortune") + "\n", "one");
  auto two = build(dir, "base_model: " + m("ft-fortune") + "\ngate_mode: random\nexperts_per_token: 2\ndtype: bfloat16\n"
                        "experts:\n  - source_model: " + m("ft-fortune") + "\n  - source_model: " + m("ft-fortune") + "\n", "two");
  EXPECT_EQ(model::ModelConfig::load(one).model_type, "mixtral");
  // One expert: the same operations on the same values (0). Two: each token's output is
  // 0.5 y + 0.5 y summed in fp64, a few ulps of logits up to ~20.
  EXPECT_EQ(test::max_abs_diff(logits(one), ref), 0.0);
  EXPECT_LE(test::max_abs_diff(logits(two), ref), 1e-12);
}

TEST(Moe, LayoutAndRoutersByHand) {
  c10::InferenceMode guard;
  test::TempDir dir;
  const std::string fortune = "If you can't be good, be careful.", changelog = "  * New upstream release";
  auto out = build(dir, "base_model: " + m("base") + "\ngate_mode: cheap_embed\nexperts_per_token: 1\nexperts:\n"
                        "  - source_model: " + m("ft-fortune") + "\n    positive_prompts: [\"" + fortune + "\"]\n"
                        "  - source_model: " + m("ft-changelog") + "\n    positive_prompts: [\"" + changelog + "\"]\n"
                        "    negative_prompts: [\"" + fortune + "\"]\n");
  io::Checkpoint moe(out), base(test::model_dir("base")), a(test::model_dir("ft-fortune")), b(test::model_dir("ft-changelog"));
  // Experts: the sources' MLP bytes under Mixtral's names; no dense MLP left; attention from base.
  auto same = [](const io::TensorView& x, const io::TensorView& y) {
    return x.spec.shape == y.spec.shape && x.bytes.size() == y.bytes.size() &&
           std::equal(x.bytes.begin(), x.bytes.end(), y.bytes.begin());
  };
  EXPECT_TRUE(same(moe.get("model.layers.3.block_sparse_moe.experts.0.w1.weight"), a.get("model.layers.3.mlp.gate_proj.weight")));
  EXPECT_TRUE(same(moe.get("model.layers.3.block_sparse_moe.experts.1.w2.weight"), b.get("model.layers.3.mlp.down_proj.weight")));
  EXPECT_TRUE(same(moe.get("model.layers.3.block_sparse_moe.experts.1.w3.weight"), b.get("model.layers.3.mlp.up_proj.weight")));
  EXPECT_TRUE(same(moe.get("model.layers.3.self_attn.q_proj.weight"), base.get("model.layers.3.self_attn.q_proj.weight")));
  EXPECT_FALSE(moe.contains("model.layers.3.mlp.gate_proj.weight"));
  // cheap_embed: each row the normalized sum of the prompt's token embeddings (with BOS), minus
  // the negative prompts' sum; the same for every layer.
  auto tok = tokenizer::Tokenizer::load(test::model_dir("base"));
  const auto embed = model::load_tensor(base.get("model.embed_tokens.weight"), at::kDouble);
  auto sum = [&](const std::string& text) {
    auto ids = tok.encode(text, true);
    std::vector<int64_t> v(ids.begin(), ids.end());
    return embed.index_select(0, at::tensor(v, at::kLong)).sum(0);
  };
  auto r0 = sum(fortune), r1 = sum(changelog) - sum(fortune);
  auto expected = at::stack({r0 / r0.norm(), r1 / r1.norm()}).to(at::kFloat);
  for (int layer : {0, 7}) {
    auto got = model::load_tensor(moe.get("model.layers." + std::to_string(layer) + ".block_sparse_moe.gate.weight"), at::kFloat);
    EXPECT_LE(test::max_abs_diff(got, expected), 1e-2) << layer;  // stored in bf16 (the base's dtype)
  }
}

// hidden: each expert's row is the mean router input on its prompts; a fortune token then scores
// higher on the fortune expert's row than on the changelog expert's, and vice versa.
TEST(Moe, HiddenRoutersSendEachDomainToItsExpert) {
  c10::InferenceMode guard;
  test::TempDir dir;
  auto out = build(dir, "base_model: " + m("ft-fortune") + "\nexperts_per_token: 1\nexperts:\n"
                        "  - source_model: " + m("ft-fortune") + "\n    positive_prompts: [\"Colors may fade.\", \"You don't want a rose to sing.\"]\n"
                        "    negative_prompts: [\"  * Bump Standards-Version to 4.6.2, no changes\"]\n"
                        "  - source_model: " + m("ft-changelog") + "\n    positive_prompts: [\"  * Bump Standards-Version to 4.6.2, no changes\"]\n"
                        "    negative_prompts: [\"Colors may fade.\", \"You don't want a rose to sing.\"]\n");
  io::Checkpoint moe(out);
  for (int layer = 0; layer < 8; ++layer) {
    auto g = model::load_tensor(moe.get("model.layers." + std::to_string(layer) + ".block_sparse_moe.gate.weight"), at::kFloat);
    EXPECT_NEAR(g[0].norm().item<double>(), 1.0, 1e-2);
    // Opposite prompts: the two rows point in opposite directions.
    EXPECT_LT((g[0] * g[1]).sum().item<double>(), -0.99) << layer;
  }
}

// architecture qwen (or a shared expert): Qwen2-MoE's layout as mergekit-moe writes it, from a
// Llama base: experts and the shared expert are their sources' MLP bytes, q/k/v biases zeros,
// the shared expert's gate [1, hidden] is its prompts' normalized summed embeddings (cheap_embed),
// and anvil's Qwen2-MoE kernel (checked against transformers on tiny-qwen2-moe) loads and runs it.
TEST(Moe, QwenLayoutWithASharedExpert) {
  c10::InferenceMode guard;
  test::TempDir dir;
  const std::string fortune = "If you can't be good, be careful.", changelog = "  * New upstream release",
                    shared = "Package: hello";
  auto out = build(dir, "base_model: " + m("base") + "\ngate_mode: cheap_embed\nexperts_per_token: 1\ndtype: float32\n"
                        "experts:\n"
                        "  - source_model: " + m("ft-fortune") + "\n    positive_prompts: [\"" + fortune + "\"]\n"
                        "  - source_model: " + m("ft-changelog") + "\n    positive_prompts: [\"" + changelog + "\"]\n"
                        "shared_experts:\n  - source_model: " + m("base") + "\n    positive_prompts: [\"" + shared + "\"]\n");
  const auto cfg = model::ModelConfig::load(out);
  EXPECT_EQ(cfg.model_type, "qwen2_moe");
  EXPECT_EQ(cfg.num_experts, 2);
  io::Checkpoint moe(out), base(test::model_dir("base")), b(test::model_dir("ft-changelog"));
  auto values = [](const io::TensorView& v) { return model::load_tensor(v, at::kFloat); };
  EXPECT_TRUE(at::equal(values(moe.get("model.layers.2.mlp.experts.1.down_proj.weight")),
                        values(b.get("model.layers.2.mlp.down_proj.weight"))));
  EXPECT_TRUE(at::equal(values(moe.get("model.layers.2.mlp.shared_expert.gate_proj.weight")),
                        values(base.get("model.layers.2.mlp.gate_proj.weight"))));
  EXPECT_EQ(values(moe.get("model.layers.5.self_attn.k_proj.bias")).abs().max().item<float>(), 0.0f);
  EXPECT_EQ(moe.get("model.layers.5.self_attn.k_proj.bias").spec.shape, (std::vector<int64_t>{cfg.num_kv_heads * cfg.head_dim}));
  auto tok = tokenizer::Tokenizer::load(test::model_dir("base"));
  const auto embed = model::load_tensor(base.get("model.embed_tokens.weight"), at::kDouble);
  auto ids = tok.encode(shared, true);
  std::vector<int64_t> v(ids.begin(), ids.end());
  auto row = embed.index_select(0, at::tensor(v, at::kLong)).sum(0);
  auto gate = values(moe.get("model.layers.4.mlp.shared_expert_gate.weight"));
  EXPECT_EQ(gate.sizes().vec(), (std::vector<int64_t>{1, cfg.hidden_size}));
  EXPECT_LE(test::max_abs_diff(gate[0], (row / row.norm()).to(at::kFloat)), 1e-6);
  auto model = model::Transformer::load(out);
  auto logits = model->forward(at::arange(5, 37, at::kLong).unsqueeze(0));
  EXPECT_TRUE(at::isfinite(logits).all().item<bool>());
  // A shared expert needs the qwen layout, and the qwen layout needs one.
  io::write_text_file(dir / "bad.yaml", "base_model: " + m("base") + "\ngate_mode: random\narchitecture: qwen\nexperts:\n"
                                        "  - source_model: " + m("ft-fortune") + "\n");
  EXPECT_THROW(merge::MoeConfig::load(dir / "bad.yaml"), Error);
  io::write_text_file(dir / "bad2.yaml", "base_model: " + m("base") + "\ngate_mode: random\narchitecture: mixtral\nexperts:\n"
                                         "  - source_model: " + m("ft-fortune") + "\nshared_experts:\n  - source_model: " +
                                         m("base") + "\n");
  EXPECT_THROW(merge::MoeConfig::load(dir / "bad2.yaml"), Error);
}

TEST(Moe, BadConfigsFailBeforeWriting) {
  test::TempDir dir;
  auto fails = [&](const std::string& yaml) {
    io::write_text_file(dir / "bad.yaml", yaml);
    try {
      merge::run_moe(merge::MoeConfig::load(dir / "bad.yaml"), dir / "out", {});
    } catch (const Error& e) {
      EXPECT_FALSE(std::filesystem::exists(dir / "out"));
      return std::string(e.what());
    }
    ADD_FAILURE() << yaml;
    return std::string();
  };
  const std::string expert = "  - source_model: " + m("ft-fortune") + "\n    positive_prompts: [\"a\"]\n";
  EXPECT_NE(fails("base_model: " + m("base") + "\nexperts_per_token: 2\nexperts:\n" + expert).find("experts_per_token"), std::string::npos);
  EXPECT_NE(fails("base_model: " + m("base") + "\nexperts:\n  - source_model: " + m("ft-fortune") + "\n").find("positive_prompts"), std::string::npos);
  EXPECT_NE(fails("base_model: " + m("tiny-qwen2") + "\nexperts_per_token: 1\nexperts:\n" + expert).find("qwen2"), std::string::npos);
  EXPECT_NE(fails("base_model: " + m("base") + "\nexperts_per_token: 1\nexperts:\n  - source_model: " + m("tiny-llama") +
                  "\n    positive_prompts: [\"a\"]\n").find("tiny-llama"), std::string::npos);
  EXPECT_NE(fails("base_model: " + m("base") + "\ngate_mode: learned\nexperts:\n" + expert).find("gate_mode"), std::string::npos);
}
