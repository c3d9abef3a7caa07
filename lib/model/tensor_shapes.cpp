#include "model/tensor_shapes.h"

#include <unordered_set>

#include "io/checkpoint.h"
#include "util/error.h"

namespace anvil::model {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::vector<ExpectedTensor> expected_tensors(const ModelConfig& c) {
  const int64_t H = c.hidden_size, D = c.head_dim, F = c.intermediate_size, V = c.vocab_size;
  const int64_t Q = c.num_heads * D, KV = c.num_kv_heads * D;
  std::vector<ExpectedTensor> out{
      {"model.embed_tokens.weight", {V, H}},
      {"model.norm.weight", {H}},
      {"lm_head.weight", {V, H}, !c.tie_word_embeddings},
  };
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    out.push_back({p + "input_layernorm.weight", {H}});
    out.push_back({p + "post_attention_layernorm.weight", {H}});
    out.push_back({p + "self_attn.q_proj.weight", {Q, H}});
    out.push_back({p + "self_attn.k_proj.weight", {KV, H}});
    out.push_back({p + "self_attn.v_proj.weight", {KV, H}});
    out.push_back({p + "self_attn.o_proj.weight", {H, Q}});
    out.push_back({p + "self_attn.o_proj.bias", {H}, false});
    out.push_back({p + "self_attn.q_proj.bias", {Q}, c.attention_bias});
    out.push_back({p + "self_attn.k_proj.bias", {KV}, c.attention_bias});
    out.push_back({p + "self_attn.v_proj.bias", {KV}, c.attention_bias});
    if (c.arch->ffn == FfnKind::Dense) {
      out.push_back({p + "mlp.gate_proj.weight", {F, H}});
      out.push_back({p + "mlp.up_proj.weight", {F, H}});
      out.push_back({p + "mlp.down_proj.weight", {H, F}});
      continue;
    }
    out.push_back({p + std::string(c.arch->moe_router), {c.num_experts, H}});
    for (int64_t e = 0; e < c.num_experts; ++e) {
      auto name = [&](std::string_view pattern) {
        std::string s(pattern);
        s.replace(s.find("{e}"), 3, std::to_string(e));
        return p + s;
      };
      out.push_back({name(c.arch->moe_gate), {F, H}});
      out.push_back({name(c.arch->moe_up), {F, H}});
      out.push_back({name(c.arch->moe_down), {H, F}});
    }
  }
  return out;
}

void check_tensor_shapes(const ModelConfig& config, const ShapeLookup& shape_of, const std::vector<std::string>& present,
                         const std::string& where, const std::string& config_name) {
  const std::vector<ExpectedTensor> expected = expected_tensors(config);
  std::unordered_set<std::string> names;
  for (const ExpectedTensor& t : expected) names.insert(t.name);
  for (const std::string& name : present) {
    // Older transformers saved the rotary frequencies; they are recomputed from the config.
    if (names.count(name) || name.ends_with(".rotary_emb.inv_freq")) continue;
    fail(where, "tensor '" + name + "' is not part of the " + config.model_type + " model " + config_name +
                    " describes (" + std::to_string(config.num_layers) + " layers" +
                    (config.num_experts ? ", " + std::to_string(config.num_experts) + " experts" : std::string()) + ")");
  }
  for (const ExpectedTensor& t : expected) {
    const auto shape = shape_of(t.name);
    if (!shape) {
      if (t.required)
        fail(where, "tensor '" + t.name + "' is missing (" + config_name + " describes " + config.model_type + " with " +
                        std::to_string(config.num_layers) + " layers)");
      continue;
    }
    if (*shape != t.shape)
      fail(where, "tensor '" + t.name + "' has shape " + shape_string(*shape) + " but " + config_name + " implies " +
                      shape_string(t.shape));
  }
}

void check_checkpoint_shapes(const ModelConfig& config, const io::Checkpoint& checkpoint, const std::string& where) {
  check_tensor_shapes(
      config,
      [&](const std::string& name) -> std::optional<std::vector<int64_t>> {
        if (!checkpoint.contains(name)) return std::nullopt;
        return checkpoint.get(name).spec.shape;
      },
      checkpoint.names(), where, "config.json");
}

}  // namespace anvil::model
