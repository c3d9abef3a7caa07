#include "model/tensor_role.h"

#include <charconv>

namespace anvil::model {
namespace {

struct RoleInfo {
  std::string_view gguf;   // llama.cpp's name (gguf-py's MODEL_TENSOR names)
  std::string_view label;
};

// Indexed by TensorRole (checked below).
constexpr std::array<RoleInfo, kTensorRoleCount> kRoles{{
    {"token_embd.weight", "token_embd"},
    {"output_norm.weight", "output_norm"},
    {"output_norm.bias", "output_norm.bias"},
    {"output.weight", "output"},
    {"output.bias", "output.bias"},
    {"blk.{L}.attn_norm.weight", "attn_norm"},
    {"blk.{L}.attn_norm.bias", "attn_norm.bias"},
    {"blk.{L}.attn_q.weight", "attn_q"},
    {"blk.{L}.attn_q.bias", "attn_q.bias"},
    {"blk.{L}.attn_k.weight", "attn_k"},
    {"blk.{L}.attn_k.bias", "attn_k.bias"},
    {"blk.{L}.attn_v.weight", "attn_v"},
    {"blk.{L}.attn_v.bias", "attn_v.bias"},
    {"blk.{L}.attn_qkv.weight", "attn_qkv"},
    {"blk.{L}.attn_output.weight", "attn_output"},
    {"blk.{L}.attn_output.bias", "attn_output.bias"},
    {"blk.{L}.attn_q_norm.weight", "attn_q_norm"},
    {"blk.{L}.attn_k_norm.weight", "attn_k_norm"},
    {"blk.{L}.post_attention_norm.weight", "post_attention_norm"},
    {"blk.{L}.ffn_norm.weight", "ffn_norm"},
    {"blk.{L}.post_ffw_norm.weight", "post_ffw_norm"},
    {"blk.{L}.ffn_gate.weight", "ffn_gate"},
    {"blk.{L}.ffn_up.weight", "ffn_up"},
    {"blk.{L}.ffn_up.bias", "ffn_up.bias"},
    {"blk.{L}.ffn_up.weight", "ffn_gate_up"},  // llama.cpp keeps Phi-3's fused gate/up as ffn_up
    {"blk.{L}.ffn_down.weight", "ffn_down"},
    {"blk.{L}.ffn_down.bias", "ffn_down.bias"},
    {"blk.{L}.ffn_gate_inp.weight", "ffn_gate_inp"},
    {"blk.{L}.ffn_gate_exps.weight", "ffn_gate_exps"},
    {"blk.{L}.ffn_up_exps.weight", "ffn_up_exps"},
    {"blk.{L}.ffn_down_exps.weight", "ffn_down_exps"},
    {"blk.{L}.ffn_gate_shexp.weight", "ffn_gate_shexp"},
    {"blk.{L}.ffn_up_shexp.weight", "ffn_up_shexp"},
    {"blk.{L}.ffn_down_shexp.weight", "ffn_down_shexp"},
    {"blk.{L}.ffn_gate_inp_shexp.weight", "ffn_gate_inp_shexp"},
}};
static_assert(kRoles.back().label == "ffn_gate_inp_shexp", "kRoles must follow TensorRole's order");

// Parses the decimal index at the front of `s`, returning how many characters it used (0: none).
size_t parse_index(std::string_view s, int64_t& value) {
  size_t n = 0;
  while (n < s.size() && s[n] >= '0' && s[n] <= '9') ++n;
  if (n == 0) return 0;
  value = INT64_MAX;
  std::from_chars(s.data(), s.data() + n, value);  // an overflow leaves INT64_MAX
  return n;
}

// Matches a template with {L}/{E} placeholders against a name.
bool match_template(std::string_view tmpl, std::string_view name, int64_t& layer, int64_t& expert) {
  layer = expert = -1;
  size_t t = 0, n = 0;
  while (t < tmpl.size()) {
    if (tmpl[t] == '{' && t + 2 < tmpl.size() && tmpl[t + 2] == '}') {
      int64_t& slot = tmpl[t + 1] == 'L' ? layer : expert;
      const size_t used = parse_index(name.substr(n), slot);
      if (used == 0) return false;
      // "01" is not a layer index any writer produces; refusing it keeps one name per tensor.
      if (used > 1 && name[n] == '0') return false;
      n += used;
      t += 3;
      continue;
    }
    if (n >= name.size() || name[n] != tmpl[t]) return false;
    ++n, ++t;
  }
  return n == name.size();
}

}  // namespace

std::string_view gguf_name_template(TensorRole role) { return kRoles[static_cast<size_t>(role)].gguf; }
std::string_view role_label(TensorRole role) { return kRoles[static_cast<size_t>(role)].label; }
bool is_per_layer(TensorRole role) { return gguf_name_template(role).starts_with("blk."); }
bool is_expert(TensorRole role) {
  return role == TensorRole::ExpertGate || role == TensorRole::ExpertUp || role == TensorRole::ExpertDown;
}
bool is_norm(TensorRole role) {
  switch (role) {
    case TensorRole::OutputNorm:
    case TensorRole::AttnNorm:
    case TensorRole::AttnQNorm:
    case TensorRole::AttnKNorm:
    case TensorRole::AttnPostNorm:
    case TensorRole::FfnNorm:
    case TensorRole::FfnPostNorm:
      return true;
    default:
      return false;
  }
}
bool is_bias(TensorRole role) { return gguf_name_template(role).ends_with(".bias"); }
bool is_layer_projection(TensorRole role) {
  switch (role) {
    case TensorRole::AttnQ:
    case TensorRole::AttnK:
    case TensorRole::AttnV:
    case TensorRole::AttnQkv:
    case TensorRole::AttnOut:
    case TensorRole::FfnGate:
    case TensorRole::FfnUp:
    case TensorRole::FfnGateUp:
    case TensorRole::FfnDown:
    case TensorRole::ExpertGate:
    case TensorRole::ExpertUp:
    case TensorRole::ExpertDown:
    case TensorRole::SharedGate:
    case TensorRole::SharedUp:
    case TensorRole::SharedDown:
      return true;
    default:
      return false;
  }
}

std::string expand_name(std::string_view tmpl, int64_t layer, int64_t expert) {
  std::string out;
  out.reserve(tmpl.size() + 8);
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] == '{' && i + 2 < tmpl.size() && tmpl[i + 2] == '}') {
      out += std::to_string(tmpl[i + 1] == 'L' ? layer : expert);
      i += 2;
      continue;
    }
    out += tmpl[i];
  }
  return out;
}

std::optional<TensorName> match_name(const RoleNames& names, std::string_view name) {
  for (size_t r = 0; r < names.size(); ++r) {
    if (names[r].empty()) continue;
    int64_t layer, expert;
    if (match_template(names[r], name, layer, expert)) return TensorName{static_cast<TensorRole>(r), layer, expert};
  }
  return std::nullopt;
}

RoleNames gguf_names_for(const RoleNames& present) {
  RoleNames out{};
  for (size_t r = 0; r < present.size(); ++r)
    if (!present[r].empty()) out[r] = kRoles[r].gguf;
  return out;
}

}  // namespace anvil::model
