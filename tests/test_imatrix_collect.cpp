// Importance matrices measured with the kernel, as llama-imatrix measures them. The first layer's
// q/k/v input is RMSNorm(embedding) * norm weight, computed here straight from the checkpoint's
// tensors (not through the model), so the sums are checked against an independent computation;
// chunking, BOS, counts and the expert stacking against llama-imatrix's rules.
#include <gtest/gtest.h>

#include "io/checkpoint.h"
#include "model/transformer.h"
#include "quant/imatrix_collect.h"
#include "test_support.h"
#include "torch_support.h"

using namespace anvil;

namespace {

std::vector<int32_t> some_ids(int64_t n, int64_t vocab, int seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
  return ids;
}

}  // namespace

TEST(ImatrixCollect, FirstLayerSumsAreTheNormedEmbeddingsSquared) {
  const auto dir = test::model_dir("tiny-llama");
  auto model = model::Transformer::load(dir);
  const auto& c = model->config();
  // Two sources: 50 tokens (3 whole chunks of 16, 2 left over) and 40 (2 chunks), BOS id 0.
  const std::vector<std::vector<int32_t>> sources{some_ids(50, c.vocab_size, 1), some_ids(40, c.vocab_size, 2)};
  quant::ImatrixOptions opts;
  opts.chunk = 16;
  opts.bos = 0;
  opts.chunks_per_forward = 2;  // batches that straddle the sources
  const auto m = quant::collect_imatrix(*model, sources, {"a.txt", "b.txt"}, opts);
  EXPECT_EQ(m.chunk_count, 5);
  EXPECT_EQ(m.chunk_size, 16);
  EXPECT_EQ(m.datasets, (std::vector<std::string>{"a.txt", "b.txt"}));

  // The tokens llama-imatrix runs: whole chunks only, each one's first token replaced by BOS.
  std::vector<int64_t> ids;
  for (const auto& s : sources)
    for (size_t t = 0; t + 16 <= s.size(); t += 16) {
      ids.push_back(0);
      ids.insert(ids.end(), s.begin() + static_cast<std::ptrdiff_t>(t) + 1, s.begin() + static_cast<std::ptrdiff_t>(t) + 16);
    }
  io::Checkpoint ckpt(dir);
  const auto tensors = test::load_reference(dir / "model.safetensors");
  const at::Tensor embed = tensors.at("model.embed_tokens.weight").to(at::kDouble);
  const at::Tensor norm = tensors.at("model.layers.0.input_layernorm.weight").to(at::kDouble);
  const at::Tensor h = embed.index_select(0, at::tensor(ids, at::kLong));
  const at::Tensor x = h * at::rsqrt(h.square().mean(-1, true) + c.rms_norm_eps) * norm;
  const at::Tensor want = x.square().sum(0);
  for (const std::string w : {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"}) {
    ASSERT_TRUE(m.entries.count(w)) << w;
    const auto& e = m.entries.at(w);
    ASSERT_EQ(e.sums.size(), static_cast<size_t>(c.hidden_size)) << w;
    ASSERT_EQ(e.counts, std::vector<double>{80.0}) << w;  // 5 chunks of 16
    const at::Tensor got = at::tensor(std::vector<double>(e.sums.begin(), e.sums.end()), at::kDouble);
    // fp32 forward against fp64 here: a few float roundings per element.
    EXPECT_LT(((got - want).abs() / want.abs().clamp_min(1e-30)).max().item<double>(), 1e-5) << w;
  }
  // Every linear weight of both layers, the LM head only on request (llama-imatrix's default).
  EXPECT_EQ(m.entries.size(), 2u * 7u);
  EXPECT_FALSE(m.entries.count("output.weight"));
  opts.process_output = true;
  const auto with_output = quant::collect_imatrix(*model, sources, {"a.txt"}, opts);
  ASSERT_TRUE(with_output.entries.count("output.weight"));
  EXPECT_EQ(with_output.entries.at("output.weight").counts, std::vector<double>{80.0});
}

// An expert sees only the tokens routed to it: a layer's experts are one entry (columns x
// experts), counted per expert, and the counts add up to tokens x experts per token.
TEST(ImatrixCollect, ExpertsAreStackedAndCountedPerExpert) {
  auto model = model::Transformer::load(test::model_dir("tiny-mixtral"));
  const auto& c = model->config();
  quant::ImatrixOptions opts;
  opts.chunk = 32;
  const auto m = quant::collect_imatrix(*model, {some_ids(96, c.vocab_size, 3)}, {"t.txt"}, opts);
  for (int64_t layer = 0; layer < c.num_layers; ++layer)
    for (const std::string role : {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"}) {
      const std::string name = "blk." + std::to_string(layer) + "." + role + ".weight";
      ASSERT_TRUE(m.entries.count(name)) << name;
      const auto& e = m.entries.at(name);
      ASSERT_EQ(e.counts.size(), static_cast<size_t>(c.num_experts)) << name;
      double routed = 0;
      for (double n : e.counts) routed += n;
      EXPECT_EQ(routed, 96.0 * static_cast<double>(c.num_experts_per_tok)) << name;
      const int64_t cols = role == "ffn_down_exps" ? c.intermediate_size : c.hidden_size;
      EXPECT_EQ(e.sums.size(), static_cast<size_t>(cols * c.num_experts)) << name;
    }
}
