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
  using R = TensorRole;
  const Architecture& a = *c.arch;
  const int64_t H = c.hidden_size, D = c.head_dim, V = c.vocab_size;
  const int64_t Q = c.num_heads * D, KV = c.num_kv_heads * D;
  const bool layer_norm = a.norm == NormKind::LayerNorm;
  std::vector<ExpectedTensor> out;
  // `required`: whether a checkpoint must have it when the family does.
  auto add = [&](R role, std::vector<int64_t> shape, bool required, int64_t layer = -1, int64_t expert = -1) {
    if (a.has(role)) out.push_back({expand_name(a.hf_template(role), layer, expert), std::move(shape), required});
  };
  add(R::TokenEmbedding, {V, H}, true);
  add(R::OutputNorm, {H}, true);
  add(R::OutputNormBias, {H}, layer_norm);
  add(R::Output, {V, H}, !c.tie_word_embeddings);
  add(R::OutputBias, {V}, false);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    add(R::AttnNorm, {H}, true, i);
    add(R::AttnNormBias, {H}, layer_norm, i);
    add(R::AttnQ, {Q, H}, true, i);
    add(R::AttnQBias, {Q}, c.attention_bias, i);
    add(R::AttnK, {KV, H}, true, i);
    add(R::AttnKBias, {KV}, c.attention_bias, i);
    add(R::AttnV, {KV, H}, true, i);
    add(R::AttnVBias, {KV}, c.attention_bias, i);
    add(R::AttnQkv, {Q + 2 * KV, H}, true, i);
    add(R::AttnOut, {H, Q}, true, i);
    add(R::AttnOutBias, {H}, false, i);
    if (a.qk_norm) {
      add(R::AttnQNorm, {D}, true, i);
      add(R::AttnKNorm, {D}, true, i);
    }
    add(R::AttnPostNorm, {H}, true, i);
    add(R::FfnNorm, {H}, true, i);
    add(R::FfnPostNorm, {H}, true, i);
    if (!c.layer_is_sparse(i)) {
      const int64_t F = c.intermediate_size;
      add(R::FfnGate, {F, H}, true, i);
      add(R::FfnUp, {F, H}, true, i);
      add(R::FfnUpBias, {F}, false, i);
      add(R::FfnGateUp, {2 * F, H}, true, i);
      add(R::FfnDown, {H, F}, true, i);
      add(R::FfnDownBias, {H}, false, i);
      continue;
    }
    const int64_t Fe = c.expert_intermediate_size, Fs = c.shared_intermediate_size;
    add(R::MoeRouter, {c.num_experts, H}, true, i);
    for (int64_t e = 0; e < c.num_experts; ++e) {
      add(R::ExpertGate, {Fe, H}, true, i, e);
      add(R::ExpertUp, {Fe, H}, true, i, e);
      add(R::ExpertDown, {H, Fe}, true, i, e);
    }
    if (a.shared_experts != SharedExperts::None) {
      add(R::SharedGate, {Fs, H}, true, i);
      add(R::SharedUp, {Fs, H}, true, i);
      add(R::SharedDown, {H, Fs}, true, i);
      add(R::SharedExpertGate, {1, H}, true, i);
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
