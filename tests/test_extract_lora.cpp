// anvil extract-lora against the mathematics it promises and PEFT's layout: at full rank the
// adapter is the fine-tune's difference; truncated, its error is what Eckart-Young says the best
// rank-r approximation's is (the tail singular values); the names, shapes and config keys are
// those of a PEFT adapter (../shared/models/lora-random, written by PEFT); and base + adapter
// approaches the fine-tune's perplexity as the rank grows.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>

#include "eval/perplexity.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "merge/extract_lora.h"
#include "model/lora_adapter.h"
#include "model/tensor_bridge.h"
#include "model/transformer.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "torch_support.h"
#include "util/error.h"

using namespace anvil;

namespace {

merge::ExtractLoraSummary extract(const std::filesystem::path& out, int64_t rank, std::optional<double> energy = {}) {
  merge::ExtractLoraOptions o;
  o.max_rank = rank;
  o.energy = energy;
  return merge::extract_lora(test::model_dir("base"), test::model_dir("ft-fortune"), out, o);
}

at::Tensor difference(const std::string& name) {
  io::Checkpoint base(test::model_dir("base")), ft(test::model_dir("ft-fortune"));
  return model::load_tensor(ft.get(name), at::kFloat) - model::load_tensor(base.get(name), at::kFloat);
}

}  // namespace

TEST(ExtractLora, FullRankIsTheDifferenceAndTruncationIsTheBestApproximation) {
  c10::InferenceMode guard;
  test::TempDir dir;
  // Hidden size 256: rank 256 is full rank for every matrix of the fixture model.
  extract(dir / "full", 256);
  extract(dir / "r8", 8);
  auto full = model::LoraAdapter::load(dir / "full");
  auto r8 = model::LoraAdapter::load(dir / "r8");
  for (std::string name : {"model.layers.0.self_attn.q_proj.weight", "model.layers.3.self_attn.k_proj.weight",
                           "model.layers.7.mlp.down_proj.weight", "model.embed_tokens.weight", "lm_head.weight"}) {
    const at::Tensor d = difference(name);
    const double scale = d.abs().max().item<double>();
    EXPECT_LE(test::max_abs_diff(full->delta(name), d), 2e-5 * scale) << name;
    // Eckart-Young: the best rank-8 approximation leaves exactly the tail singular values.
    const auto s = at::linalg_svdvals(d.to(at::kDouble));
    const double tail = s.narrow(0, 8, s.numel() - 8).square().sum().item<double>();
    const double err = (r8->delta(name).to(at::kDouble) - d.to(at::kDouble)).square().sum().item<double>();
    EXPECT_NEAR(err / tail, 1.0, 1e-3) << name;
  }
}

TEST(ExtractLora, HasPeftsLayout) {
  test::TempDir dir;
  auto summary = extract(dir / "a", 8);
  io::Checkpoint ours(dir / "a" / "adapter_model.safetensors");
  io::Checkpoint peft(test::model_dir("lora-random") / "adapter_model.safetensors");
  // Every tensor PEFT wrote for rank 8 (the same 256/768 shapes) is there, same name and shape.
  for (const auto& name : peft.names()) {
    const io::TensorView* t = ours.find(name);
    ASSERT_TRUE(t) << name;
    EXPECT_EQ(t->spec.shape, peft.get(name).spec.shape) << name;
  }
  // The embedding as PEFT's lora_embedding_A [r, vocab] / lora_embedding_B [hidden, r].
  EXPECT_EQ(ours.get("base_model.model.model.embed_tokens.lora_embedding_A").spec.shape, (std::vector<int64_t>{8, 4096}));
  EXPECT_EQ(ours.get("base_model.model.model.embed_tokens.lora_embedding_B").spec.shape, (std::vector<int64_t>{256, 8}));
  // Config keys are PEFT's own (all present in PEFT's adapter_config.json), with its types.
  auto cfg = nlohmann::json::parse(io::read_text_file(dir / "a" / "adapter_config.json"));
  auto ref = nlohmann::json::parse(io::read_text_file(test::model_dir("lora-random") / "adapter_config.json"));
  for (const auto& [key, value] : cfg.items()) {
    ASSERT_TRUE(ref.contains(key)) << key;
    if (!value.is_null() && !ref[key].is_null()) EXPECT_EQ(value.type_name(), std::string(ref[key].type_name())) << key;
  }
  EXPECT_EQ(cfg["r"], 8);
  EXPECT_EQ(cfg["lora_alpha"], 8);
  // The fine-tune changed the norms too: reported, not silently dropped.
  EXPECT_FALSE(summary.not_decomposable.empty());
  EXPECT_TRUE(summary.not_decomposable.front().ends_with("norm.weight")) << summary.not_decomposable.front();
}

TEST(ExtractLora, EnergyChoosesRanksPerModuleThatTheLoaderApplies) {
  c10::InferenceMode guard;
  test::TempDir dir;
  auto summary = extract(dir / "e", 64, 0.5);
  auto cfg = nlohmann::json::parse(io::read_text_file(dir / "e" / "adapter_config.json"));
  ASSERT_FALSE(cfg["rank_pattern"].empty());
  auto adapter = model::LoraAdapter::load(dir / "e");
  for (const auto& mod : summary.modules) {
    EXPECT_GE(mod.kept, 0.5) << mod.module;
    EXPECT_LE(mod.rank, 64) << mod.module;
    // The loader reads the module's rank and scale (alpha = rank: 1) from the patterns.
    EXPECT_EQ(adapter->config().rank_of(mod.module), mod.rank) << mod.module;
    EXPECT_DOUBLE_EQ(adapter->config().scale_of(mod.module), 1.0) << mod.module;
  }
  // One module by hand: its rank is the first whose singular values keep half the energy.
  const auto& mod = summary.modules.front();
  const auto s = at::linalg_svdvals(difference(mod.module + ".weight").to(at::kDouble)).square();
  const double total = s.sum().item<double>();
  EXPECT_GE(s.narrow(0, 0, mod.rank).sum().item<double>(), 0.5 * total);
  if (mod.rank > 1) EXPECT_LT(s.narrow(0, 0, mod.rank - 1).sum().item<double>(), 0.5 * total);
}

// base + extracted adapter approaches ft-fortune on fortune text as the rank grows (the first
// 20 kB of fortune.val: base ~550, ft-fortune ~45). At full rank only the norms are missing.
TEST(ExtractLora, PerplexityApproachesTheFineTuneAsRankGrows) {
  c10::InferenceMode guard;
  test::TempDir dir;
  auto tok = tokenizer::Tokenizer::load(test::model_dir("base"));
  const auto tokens = tok.encode(io::read_text_file(test::shared_dir() / "data" / "fortune.val.txt").substr(0, 20000));
  eval::PerplexityOptions opts;
  opts.threads = 2;
  auto ppl = [&](const model::LoraAdapter* adapter, const std::string& model) {
    auto m = model::Transformer::load(test::model_dir(model), {}, adapter);
    return eval::evaluate_perplexity(*m, tokens, opts).perplexity;
  };
  const double base = ppl(nullptr, "base"), ft = ppl(nullptr, "ft-fortune");
  std::vector<double> scores;
  for (int64_t r : {4, 32, 256}) {
    extract(dir / std::to_string(r), r);
    auto adapter = model::LoraAdapter::load(dir / std::to_string(r));
    scores.push_back(ppl(adapter.get(), "base"));
    std::printf("  rank %lld: %.2f (base %.2f, ft-fortune %.2f)\n", static_cast<long long>(r), scores.back(), base, ft);
  }
  EXPECT_LT(scores[0], base);
  EXPECT_LT(scores[1], scores[0]);
  EXPECT_LT(scores[2], scores[1]);
  EXPECT_LT(scores[2], 1.1 * ft);
}

TEST(ExtractLora, RejectsModelsThatDoNotMatchBeforeWriting) {
  test::TempDir dir;
  merge::ExtractLoraOptions o;
  o.max_rank = 8;
  EXPECT_THROW(merge::extract_lora(test::model_dir("base"), test::model_dir("tiny-qwen2"), dir / "x", o), Error);
  EXPECT_THROW(merge::extract_lora(test::model_dir("base"), test::model_dir("base"), dir / "x", o), Error);  // nothing differs
  o.max_rank = 0;
  EXPECT_THROW(merge::extract_lora(test::model_dir("base"), test::model_dir("ft-fortune"), dir / "x", o), Error);
  EXPECT_FALSE(std::filesystem::exists(dir / "x"));
  EXPECT_EQ(test::count_entries(dir.path()), 0u);
}
