#include <charconv>
#include "quant/quant_mix.h"

#include <array>
#include <cctype>
#include <regex>

namespace anvil::quant {
namespace {

constexpr std::array<QuantMix, 19> kMixes{{
    {"F32", 0, "F32"},       {"F16", 1, "F16"},       {"BF16", 32, "BF16"},    {"Q4_0", 2, "Q4_0"},
    {"Q4_1", 3, "Q4_1"},     {"Q8_0", 7, "Q8_0"},     {"Q5_0", 8, "Q5_0"},     {"Q5_1", 9, "Q5_1"},
    {"Q2_K", 10, "Q2_K"},    {"Q3_K_S", 11, "Q3_K"},  {"Q3_K_M", 12, "Q3_K"},  {"Q3_K_L", 13, "Q3_K"},
    {"Q4_K_S", 14, "Q4_K"},  {"Q4_K_M", 15, "Q4_K"},  {"Q5_K_S", 16, "Q5_K"},  {"Q5_K_M", 17, "Q5_K"},
    {"Q6_K", 18, "Q6_K"},    {"Q2_K_S", 21, "Q2_K"},  {"IQ4_NL", 25, "IQ4_NL"},
}};

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::toupper(static_cast<unsigned char>(a[i])) != std::toupper(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

// llama-quantize's "use more bits" layers: the first and last eighth, and every third between.
bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Fallbacks when the row is not a multiple of the chosen type's block.
const QuantType* fallback(const QuantType* t, int64_t row_length) {
  if (row_length % t->block_elements == 0) return t;
  std::string_view alt = t->name == "Q2_K" || t->name == "Q3_K" ? "Q4_0"
                         : t->name == "Q4_K"                    ? "Q5_0"
                         : t->name == "Q5_K"                    ? "Q5_1"
                         : t->name == "Q6_K"                    ? "Q8_0"
                                                                : "F16";
  const QuantType* a = find_quant_type(alt);
  return row_length % a->block_elements == 0 ? a : find_quant_type("F16");
}

}  // namespace

const QuantMix* find_quant_mix(std::string_view name) {
  for (const auto& m : kMixes)
    if (iequals(m.name, name)) return &m;
  return nullptr;
}

std::vector<std::string_view> quant_mix_names() {
  std::vector<std::string_view> out;
  for (const auto& m : kMixes) out.push_back(m.name);
  return out;
}

size_t ggml_dimension_count(const std::vector<uint64_t>& dims) {
  size_t n = dims.size();
  while (n > 1 && dims[n - 1] == 1) --n;
  return n;
}

const QuantType* choose_tensor_type(const QuantMix& mix, const MixContext& ctx, const std::string& name,
                                    int64_t row_length, size_t n_dims, const QuantType* source_type) {
  const QuantType* base = find_quant_type(mix.base);
  // llama-quantize touches only 2-D+ "*weight" tensors that are not norms.
  if (n_dims < 2 || !ends_with(name, "weight") || name.find("_norm.weight") != std::string::npos ||
      name.find("ffn_gate_inp.weight") != std::string::npos)
    return source_type;
  if (base->block_elements == 1) return base;  // F32 / F16 / BF16: no per-tensor rules

  static const std::regex layer_re(R"(^blk\.(\d+)\.)");
  std::smatch m;
  int64_t layer = -1;
  if (std::regex_search(name, m, layer_re)) std::from_chars(m[1].first.base(), m[1].second.base(), layer);
  const int64_t n = ctx.n_layers;
  const int64_t gqa = ctx.n_head / std::max<int64_t>(1, ctx.n_head_kv);
  const std::string_view f = mix.name;
  std::string_view t = mix.base;

  const bool is_output = name == "output.weight" || (ctx.tied_embeddings && name == "token_embd.weight");
  if (is_output) {
    if (row_length % base->block_elements != 0) t = "Q8_0";
    else if (t != "Q8_0") t = "Q6_K";
  } else if (name == "token_embd.weight") {
    // the default type
  } else if (name.find("attn_v.weight") != std::string::npos || name.find("attn_qkv.weight") != std::string::npos) {
    // llama-quantize treats a fused qkv (Phi-3) as attn_v: its own qkv rule is unreachable.
    if (f == "Q2_K") t = gqa >= 4 ? "Q4_K" : "Q3_K";
    else if (f == "Q2_K_S" && gqa >= 4) t = "Q4_K";
    else if (f == "Q3_K_M") t = layer < 2 ? "Q5_K" : "Q4_K";
    else if (f == "Q3_K_L") t = "Q5_K";
    else if (f == "IQ4_NL" && gqa >= 4) t = "Q5_K";
    else if ((f == "Q4_K_M" || f == "Q5_K_M") && use_more_bits(layer, n)) t = "Q6_K";
    else if (f == "Q4_K_S" && layer < 4) t = "Q5_K";
    if (ctx.n_expert == 8) t = "Q8_0";  // llama.cpp: "trades just ~128MB" on Mixtral-8x7B
  } else if (name.find("attn_k.weight") != std::string::npos) {
    if (ctx.n_expert == 8) t = "Q8_0";
  } else if (name.find("ffn_down") != std::string::npos) {
    if (f == "Q2_K") t = "Q3_K";
    else if (f == "Q2_K_S") {
      if (layer < n / 8) t = "Q4_K";
    } else if (f == "Q3_K_M") t = layer < n / 16 ? "Q5_K" : "Q4_K";
    else if (f == "Q3_K_L") t = "Q5_K";
    else if (f == "Q4_K_M") {
      if (use_more_bits(layer, n)) t = "Q6_K";
    } else if (layer < n / 8 && f == "IQ4_NL" && !ctx.has_imatrix) t = "Q5_K";
    else if (f == "Q5_K_M" && use_more_bits(layer, n)) t = "Q6_K";
    else if (f == "Q4_K_S" && layer < n / 8) t = "Q5_K";
    // With an importance matrix, "against craziness in the first few ffn_down layers" (llama.cpp).
    else if ((f == "Q4_0" || f == "Q5_0") && ctx.has_imatrix && layer < n / 8) t = f == "Q4_0" ? "Q4_1" : "Q5_1";
  } else if (name.find("attn_output.weight") != std::string::npos) {
    if (ctx.n_expert == 8) {
      if (f == "Q2_K" || f == "Q3_K_S" || f == "Q3_K_M" || f == "IQ4_NL" || f == "Q4_K_S" || f == "Q4_K_M") t = "Q5_K";
    } else if (f == "Q2_K") t = "Q3_K";
    else if (f == "Q3_K_M") t = "Q4_K";
    else if (f == "Q3_K_L") t = "Q5_K";
  }
  return fallback(find_quant_type(t), row_length);
}

}  // namespace anvil::quant
