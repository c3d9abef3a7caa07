#include <charconv>
#include "model/gguf_names.h"

#include <array>
#include <regex>
#include <utility>

namespace anvil::model {
namespace {

using Pair = std::pair<const char*, const char*>;

constexpr std::array<Pair, 3> kGlobal{{
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
}};

// Suffixes after "model.layers.N." / "blk.N.".
constexpr std::array<Pair, 14> kLayer{{
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.o_proj.bias", "attn_output.bias"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
    {"block_sparse_moe.gate.weight", "ffn_gate_inp.weight"},
}};

// Stacked expert projections: HF suffix after "experts.E." and llama.cpp's suffix after "blk.N.".
constexpr std::array<Pair, 3> kExperts{{
    {"w1.weight", "ffn_gate_exps.weight"},
    {"w3.weight", "ffn_up_exps.weight"},
    {"w2.weight", "ffn_down_exps.weight"},
}};

std::optional<std::string> map(const std::string& name, bool to_gguf) {
  for (const auto& [hf, gg] : kGlobal)
    if (name == (to_gguf ? hf : gg)) return std::string(to_gguf ? gg : hf);
  static const std::regex hf_layer(R"(^model\.layers\.(\d+)\.(.+)$)"), gguf_layer(R"(^blk\.(\d+)\.(.+)$)");
  std::smatch m;
  if (!std::regex_match(name, m, to_gguf ? hf_layer : gguf_layer)) return std::nullopt;
  for (const auto& [hf, gg] : kLayer)
    if (m[2] == (to_gguf ? hf : gg))
      return (to_gguf ? "blk." : "model.layers.") + m[1].str() + "." + (to_gguf ? gg : hf);
  return std::nullopt;
}

}  // namespace

std::optional<int64_t> hf_layer_index(const std::string& hf_name) {
  constexpr std::string_view prefix = "model.layers.";
  if (!hf_name.starts_with(prefix)) return std::nullopt;
  const size_t end = hf_name.find('.', prefix.size());
  if (end == std::string::npos || end == prefix.size()) return std::nullopt;
  int64_t layer = INT64_MAX;
  auto [ptr, ec] = std::from_chars(hf_name.data() + prefix.size(), hf_name.data() + end, layer);
  if (ptr != hf_name.data() + end) return std::nullopt;
  return ec == std::errc() ? layer : INT64_MAX;
}

std::optional<std::string> hf_to_gguf_name(const std::string& hf_name) { return map(hf_name, true); }
std::optional<std::string> gguf_to_hf_name(const std::string& gguf_name) { return map(gguf_name, false); }

std::optional<ExpertSlice> hf_expert_to_gguf(const std::string& hf_name) {
  static const std::regex re(R"(^model\.layers\.(\d+)\.block_sparse_moe\.experts\.(\d+)\.(.+)$)");
  std::smatch m;
  if (!std::regex_match(hf_name, m, re)) return std::nullopt;
  for (const auto& [hf, gg] : kExperts)
    if (m[3] == hf) {
      // An index too large for int64 (a stranger's "experts.99999999999999999999") stays
      // recognisably out of range instead of throwing from the conversion.
      int64_t expert = INT64_MAX;
      std::from_chars(m[2].first.base(), m[2].second.base(), expert);
      return ExpertSlice{"blk." + m[1].str() + "." + gg, expert};
    }
  return std::nullopt;
}

std::optional<std::string> gguf_expert_to_hf(const std::string& gguf_name, int64_t expert) {
  static const std::regex re(R"(^blk\.(\d+)\.(.+)$)");
  std::smatch m;
  if (!std::regex_match(gguf_name, m, re)) return std::nullopt;
  for (const auto& [hf, gg] : kExperts)
    if (m[2] == gg)
      return "model.layers." + m[1].str() + ".block_sparse_moe.experts." + std::to_string(expert) + "." + hf;
  return std::nullopt;
}

}  // namespace anvil::model
