#include "model/config.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <numbers>

#include "io/atomic_file.h"
#include "io/gguf.h"
#include "model/gguf_hparams.h"
#include "util/error.h"
#include "util/json_reader.h"

namespace anvil::model {
namespace {

using nlohmann::json;

// An integer, or the first of a list of integers (bos_token_id is written both ways).
std::optional<int64_t> first_integer(const util::JsonFields& f, const char* key) {
  const json* v = f.find(key);
  if (v && v->is_array()) {
    if (v->empty()) return std::nullopt;
    json one = json::object();
    one[key] = (*v)[0];
    return util::JsonFields(one, f.where()).optional_integer(key, INT64_MIN, INT64_MAX);
  }
  return f.optional_integer(key, INT64_MIN, INT64_MAX);
}

// One rotary parameter set: {rope_theta, rope_type | type, factor, ...}.
void parse_rope_params(const util::JsonFields& params, RopeConfig& rope, double& partial, const std::string& where,
                       const std::string& key) {
  rope.theta = params.number_or("rope_theta", rope.theta, 1e-6, 1e30);
  partial = params.number_or("partial_rotary_factor", partial, 1e-6, 1.0);
  std::string type = params.string_or("rope_type", params.string_or("type", "default"));
  if (type != "default" && type != "llama3" && type != "linear")
    fail(where, "unsupported rope type '" + type + "' in \"" + key + "\" (supported: default, linear, llama3)");
  rope.type = type;
  rope.factor = params.number_or("factor", 1.0, 1e-6, 1e6);
  rope.low_freq_factor = params.number_or("low_freq_factor", 1.0, 1e-6, 1e6);
  rope.high_freq_factor = params.number_or("high_freq_factor", 4.0, 1e-6, 1e6);
  if (type == "llama3" && !(rope.high_freq_factor > rope.low_freq_factor))
    fail(where, "\"" + key + ".high_freq_factor\" must exceed low_freq_factor");
  rope.original_max_position_embeddings =
      params.integer_or("original_max_position_embeddings", rope.original_max_position_embeddings, 1, kMaxPositions);
}

// Newer transformers: rope_parameters {rope_theta, rope_type, ...}, or per layer type
// {full_attention: {...}, sliding_attention: {...}}; older: rope_theta at the top and
// rope_scaling {rope_type|type, factor, ...}. partial_rotary_factor sits at either level.
double parse_rope(const util::JsonFields& top, const json& j, RopeConfig& rope, const std::string& where) {
  const char* params_key = nullptr;
  if (auto it = j.find("rope_parameters"); it != j.end() && !it->is_null()) params_key = "rope_parameters";
  else if (auto it2 = j.find("rope_scaling"); it2 != j.end() && !it2->is_null()) params_key = "rope_scaling";
  rope.theta = top.number_or("rope_theta", 10000.0, 1e-6, 1e30);
  double partial = top.number_or("partial_rotary_factor", 1.0, 1e-6, 1.0);
  if (!params_key) return partial;
  const json& p = j[params_key];
  if (!p.is_object()) fail(where, "\"" + std::string(params_key) + "\" must be an object");
  if (p.contains("full_attention") || p.contains("sliding_attention")) {
    for (const char* layer_type : {"full_attention", "sliding_attention"}) {
      if (!p.contains(layer_type)) continue;
      const std::string key = std::string(params_key) + "." + layer_type;
      if (!p[layer_type].is_object()) fail(where, "\"" + key + "\" must be an object");
      RopeConfig r = rope;
      parse_rope_params(util::JsonFields(p[layer_type], where, key + "."), r, partial, where, key);
      if (std::string_view(layer_type) == "full_attention") {
        rope = r;
      } else {
        // The windowed layers' own base; transformers scales only the global layers.
        if (r.type != "default") fail(where, "\"" + key + ".rope_type\" must be default (a scaled windowed rotary is not supported)");
        rope.sliding_theta = r.theta;
      }
    }
    return partial;
  }
  parse_rope_params(util::JsonFields(p, where, std::string(params_key) + "."), rope, partial, where, params_key);
  return partial;
}

// transformers' layer_types: "sliding_attention" / "full_attention" per layer.
std::vector<bool> parse_layer_types(const util::JsonFields& f, int64_t layers) {
  const json* v = f.find("layer_types");
  if (!v) return {};
  if (!v->is_array() || static_cast<int64_t>(v->size()) != layers)
    f.error("layer_types", "must list one type per layer (" + std::to_string(layers) + ")");
  std::vector<bool> sliding;
  for (const auto& t : *v) {
    if (t == "sliding_attention") sliding.push_back(true);
    else if (t == "full_attention") sliding.push_back(false);
    else f.error("layer_types", "holds " + util::json_brief(t) + " (known: sliding_attention, full_attention)");
  }
  return sliding;
}

}  // namespace

Activation parse_activation(const std::string& name, const util::JsonFields& f, const char* key) {
  if (name == "silu" || name == "swish") return Activation::Silu;
  // transformers' gelu_new and gelu_pytorch_tanh are the same tanh approximation.
  if (name == "gelu_pytorch_tanh" || name == "gelu_new") return Activation::GeluTanh;
  if (name == "gelu") return Activation::Gelu;
  f.error(key, "is '" + name + "' (supported: silu, gelu, gelu_pytorch_tanh, gelu_new)");
}

void ModelConfig::validate(const std::string& where) const {
  auto bad = [&](const std::string& what) { fail(where, what); };
  if (num_kv_heads <= 0 || num_heads % num_kv_heads != 0)
    bad("the attention head count (" + std::to_string(num_heads) + ") must be a positive multiple of the key/value head count (" +
        std::to_string(num_kv_heads) + ")");
  if (head_dim <= 0 || head_dim % 2 != 0 || head_dim > kMaxWidth)
    bad("head_dim must be a positive even number, not " + std::to_string(head_dim));
  if (rotary_dim <= 0 || rotary_dim % 2 != 0 || rotary_dim > head_dim)
    bad("the rotary dimension (" + std::to_string(rotary_dim) + ") must be a positive even number up to head_dim (" +
        std::to_string(head_dim) + ")");
  if (num_heads * head_dim > 16 * kMaxWidth) bad("head count x head_dim is implausibly large");
  if (!(std::isfinite(rms_norm_eps) && rms_norm_eps > 0 && rms_norm_eps < 1))
    bad("the norm epsilon must be a finite number in (0, 1)");
  if (!(std::isfinite(rope.theta) && rope.theta > 0)) bad("the rotary base (rope_theta) must be a positive finite number");
  if (rope.sliding_theta && !(std::isfinite(*rope.sliding_theta) && *rope.sliding_theta > 0))
    bad("the windowed layers' rotary base must be a positive finite number");
  if (sliding_window && *sliding_window < 1) bad("sliding_window must be at least 1 (or null for none)");
  if (!sliding_layers.empty() && static_cast<int64_t>(sliding_layers.size()) != num_layers)
    bad("the sliding-window layer pattern does not cover the " + std::to_string(num_layers) + " layers");
  for (double v : {attn_logit_softcap, final_logit_softcap})
    if (!(std::isfinite(v) && v >= 0)) bad("a soft-cap must be a finite number >= 0");
  for (double v : {embedding_scale, residual_scale, logit_scale, query_pre_attn_scalar > 0 ? query_pre_attn_scalar : 1.0})
    if (!(std::isfinite(v) && v > 0)) bad("embedding, residual and logit scales must be positive finite numbers");
  auto token = [&](const std::optional<int64_t>& id, const char* name) {
    if (id && (*id < 0 || *id >= vocab_size))
      bad(std::string(name) + " " + std::to_string(*id) + " is outside the vocabulary (size " + std::to_string(vocab_size) + ")");
  };
  token(bos_token_id, "bos_token_id");
  for (int64_t e : eos_token_ids) token(e, "eos_token_id");
  if (arch && arch->is_moe()) {
    if (!(num_experts_per_tok >= 1 && num_experts_per_tok <= num_experts))
      bad("experts used per token (" + std::to_string(num_experts_per_tok) + ") must be in [1, expert count " +
          std::to_string(num_experts) + "]");
    if (expert_intermediate_size < 1 || expert_intermediate_size > kMaxWidth) bad("the experts' FFN width must be positive");
    if (arch->shared_experts != SharedExperts::None && (shared_intermediate_size < 1 || shared_intermediate_size > kMaxWidth))
      bad("the shared experts' FFN width must be positive");
    if (!sparse_layers.empty() && static_cast<int64_t>(sparse_layers.size()) != num_layers)
      bad("the sparse-layer pattern does not cover the " + std::to_string(num_layers) + " layers");
    if (first_dense_layers > num_layers) bad("more leading dense layers than layers");
  }
}

ModelConfig ModelConfig::parse(const std::string& text, const std::string& where) {
  json j = util::parse_json(text, where);
  if (!j.is_object()) fail(where, "not a JSON object");
  const util::JsonFields f(j, where);
  ModelConfig c;
  c.raw_json = text;
  if (!f.has("model_type")) fail(where, "missing \"model_type\"");
  c.model_type = f.string_or("model_type", "");
  c.arch = find_architecture(c.model_type);
  if (!c.arch)
    fail(where, "unsupported architecture '" + c.model_type + "' (supported: " + supported_model_types_text() + ")");
  c.model_type = std::string(c.arch->model_type);
  c.hidden_size = f.integer("hidden_size", 1, kMaxWidth);
  c.intermediate_size = f.integer("intermediate_size", 1, kMaxWidth);
  c.num_layers = f.integer("num_hidden_layers", 1, kMaxLayers);
  c.num_heads = f.integer("num_attention_heads", 1, kMaxHeads);
  c.num_kv_heads = f.integer_or("num_key_value_heads", c.num_heads, 1, kMaxHeads);
  c.vocab_size = f.integer("vocab_size", 1, kMaxVocab);
  if (!f.has("head_dim") && c.hidden_size % c.num_heads != 0)
    fail(where, "hidden_size (" + std::to_string(c.hidden_size) + ") is not a multiple of num_attention_heads (" +
                    std::to_string(c.num_heads) + ") and no head_dim is given");
  c.head_dim = f.integer_or("head_dim", c.hidden_size / c.num_heads, 1, kMaxWidth);
  c.max_position_embeddings = f.integer_or("max_position_embeddings", 4096, 1, kMaxPositions);
  c.rms_norm_eps = c.arch->norm == NormKind::LayerNorm ? f.number_or("layer_norm_eps", 1e-5, 1e-30, 0.5)
                                                       : f.number_or("rms_norm_eps", 1e-6, 1e-30, 0.5);
  const double partial = parse_rope(f, j, c.rope, where);
  // transformers: int(head_dim * partial_rotary_factor).
  c.rotary_dim = static_cast<int64_t>(static_cast<double>(c.head_dim) * partial);
  if (c.head_dim % 2 != 0) fail(where, "head_dim must be a positive even number, not " + std::to_string(c.head_dim));
  if (c.rotary_dim <= 0 || c.rotary_dim % 2 != 0)
    fail(where, "\"partial_rotary_factor\" " + util::json_brief(partial) + " turns " + std::to_string(c.rotary_dim) + " of the " +
                    std::to_string(c.head_dim) + " head dimensions (a positive even number is needed)");
  c.tie_word_embeddings = f.boolean_or("tie_word_embeddings", c.arch->tie_word_embeddings);
  c.attention_bias = f.boolean_or("attention_bias", c.arch->attention_bias);
  c.activation = f.has("hidden_act") ? parse_activation(f.string_or("hidden_act", ""), f, "hidden_act") : c.arch->activation;
  if (f.boolean_or("use_sliding_window", c.arch->sliding_window_default_on)) {
    c.sliding_window = f.optional_integer("sliding_window", 1, kMaxPositions);
  }
  c.sliding_layers = parse_layer_types(f, c.num_layers);
  c.renormalize_top_k = f.boolean_or("norm_topk_prob", c.arch->renormalize_top_k);
  if (c.arch->read_config) c.arch->read_config(f, c);
  if (c.arch->is_moe() && c.num_experts_per_tok > c.num_experts)
    fail(where, "num_experts_per_tok exceeds the expert count");
  c.dtype = f.has("dtype") ? f.string_or("dtype", "") : f.string_or("torch_dtype", "float32");
  c.bos_token_id = first_integer(f, "bos_token_id");
  // A pad id outside the vocabulary (old Llama configs say -1) means "none"; nothing embeds it.
  c.pad_token_id = first_integer(f, "pad_token_id");
  if (c.pad_token_id && (*c.pad_token_id < 0 || *c.pad_token_id >= c.vocab_size)) c.pad_token_id.reset();
  if (const json* e = f.find("eos_token_id")) {
    const json list = e->is_array() ? *e : json::array({*e});
    for (size_t i = 0; i < list.size(); ++i) {
      json one = json::object();
      one["eos_token_id"] = list[i];
      c.eos_token_ids.push_back(util::JsonFields(one, where).integer("eos_token_id", INT64_MIN, INT64_MAX));
    }
  }
  c.validate(where);
  return c;
}

std::vector<float> llama3_rope_divisors(const RopeConfig& rope, int64_t head_dim) {
  const double low_wavelen = rope.original_max_position_embeddings / rope.low_freq_factor;
  const double high_wavelen = rope.original_max_position_embeddings / rope.high_freq_factor;
  std::vector<float> out;
  for (int64_t i = 0; i < head_dim; i += 2) {
    const float freq = 1.0f / std::pow(static_cast<float>(rope.theta), static_cast<float>(i) / static_cast<float>(head_dim));
    const double wavelen = 2 * std::numbers::pi / freq;
    if (wavelen < high_wavelen) {
      out.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      out.push_back(static_cast<float>(rope.factor));
    } else {
      double smooth = (rope.original_max_position_embeddings / wavelen - rope.low_freq_factor) /
                      (rope.high_freq_factor - rope.low_freq_factor);
      out.push_back(static_cast<float>(1 / ((1 - smooth) / rope.factor + smooth)));
    }
  }
  return out;
}

ModelConfig ModelConfig::from_gguf(const io::GgufFile& f) {
  const std::string where = f.path().string();
  const io::GgufValue* arch_value = f.find("general.architecture");
  if (!arch_value || !arch_value->as_string()) fail(where, "missing general.architecture");
  const std::string arch = *arch_value->as_string();
  ModelConfig c;
  // expert_count 0 (written by some converters for dense models) means dense.
  const io::GgufValue* expert_value = f.find(arch + ".expert_count");
  const bool experts = expert_value && expert_value->as_int() && *expert_value->as_int() > 0;
  c.arch = find_gguf_architecture(arch, experts);
  if (!c.arch)
    fail(where, "unsupported GGUF architecture '" + arch + "' (supported: " + supported_gguf_architectures_text() + ")");
  if (c.arch->is_moe() && !experts) fail(where, "missing " + arch + ".expert_count (a " + arch + " model has experts)");
  c.model_type = std::string(c.arch->model_type);
  c.activation = c.arch->activation;  // llama.cpp fixes each family's activation
  const io::GgufTensorInfo* embd = f.find_tensor("token_embd.weight");
  if (!embd || embd->dims.size() != 2) fail(where, "missing token_embd.weight");
  if (embd->dims[1] < 1 || embd->dims[1] > static_cast<uint64_t>(kMaxVocab))
    fail(where, "token_embd.weight has an implausible vocabulary size");
  c.vocab_size = static_cast<int64_t>(embd->dims[1]);
  // Every key is checked for type and range before use; a key that is present but wrong is an
  // error, never a silent default.
  read_gguf_hparams(f, c);
  if (c.arch->is_moe()) {
    if (c.num_experts_per_tok < 1 || c.num_experts_per_tok > c.num_experts)
      fail(where, arch + ".expert_used_count must be in [1, " + arch + ".expert_count]");
    if (c.expert_intermediate_size == 0) c.expert_intermediate_size = c.intermediate_size;
    c.renormalize_top_k = c.arch->renormalize_top_k;
  } else {
    c.num_experts = c.num_experts_per_tok = 0;
  }
  // Stacked expert tensors must hold exactly expert_count experts (readers slice them by it).
  for (const auto& t : f.tensors())
    if (t.name.ends_with("_exps.weight") &&
        (t.dims.size() != 3 || static_cast<int64_t>(t.dims[2]) != c.num_experts))
      fail(where, "tensor '" + t.name + "' stacks " + (t.dims.size() == 3 ? std::to_string(t.dims[2]) : "no") +
                      " experts, but " + arch + ".expert_count is " + std::to_string(c.num_experts));
  c.tie_word_embeddings = f.find_tensor("output.weight") == nullptr;
  if (const io::GgufTensorInfo* rf = f.find_tensor("rope_freqs.weight")) {
    if (rf->type != 0 || rf->dims.size() != 1 || static_cast<int64_t>(rf->dims[0]) * 2 != c.rotary_dim)
      fail(where, "rope_freqs.weight must be F32 with (rotary dimension) / 2 entries");
    const float* v = reinterpret_cast<const float*>(rf->data.data());
    c.rope.freq_divisors.assign(v, v + rf->dims[0]);
    for (float d : c.rope.freq_divisors)
      if (!(std::isfinite(d) && d > 0)) fail(where, "rope_freqs.weight holds a divisor that is not a positive finite number");
  }
  c.attention_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
  if (c.arch->complete_gguf_config) c.arch->complete_gguf_config(c);
  // llama.cpp computes rotary frequencies in fp32 without the bf16 rounding transformers applies.
  c.dtype = "float32";
  auto token_id = [&](const char* key) -> std::optional<int64_t> {
    const io::GgufValue* v = f.find(key);
    if (!v) return std::nullopt;
    if (!v->as_int()) fail(where, std::string(key) + " must be an integer");
    return *v->as_int();
  };
  c.bos_token_id = token_id("tokenizer.ggml.bos_token_id");
  if (auto eos = token_id("tokenizer.ggml.eos_token_id")) c.eos_token_ids = {*eos};
  c.pad_token_id = token_id("tokenizer.ggml.padding_token_id");
  if (c.pad_token_id && (*c.pad_token_id < 0 || *c.pad_token_id >= c.vocab_size)) c.pad_token_id.reset();
  c.validate(where);
  return c;
}

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::Silu: return "silu";
    case Activation::GeluTanh: return "gelu_pytorch_tanh";
    case Activation::Gelu: return "gelu";
  }
  return "silu";
}

std::string ModelConfig::to_hf_json(const std::string& torch_dtype) const {
  nlohmann::ordered_json cfg{{"architectures", {std::string(arch->hf_class)}},
                             {"model_type", model_type},
                             {"hidden_size", hidden_size},
                             {"intermediate_size", intermediate_size},
                             {"num_hidden_layers", num_layers},
                             {"num_attention_heads", num_heads},
                             {"num_key_value_heads", num_kv_heads},
                             {"head_dim", head_dim},
                             {"vocab_size", vocab_size},
                             {"max_position_embeddings", max_position_embeddings},
                             {arch->norm == NormKind::LayerNorm ? "layer_norm_eps" : "rms_norm_eps", rms_norm_eps},
                             {"rope_theta", rope.theta},
                             {"tie_word_embeddings", tie_word_embeddings},
                             {"attention_bias", attention_bias},
                             {"hidden_act", activation_name(activation)},
                             {"torch_dtype", torch_dtype}};
  if (rope.type == "linear") cfg["rope_scaling"] = {{"rope_type", "linear"}, {"factor", rope.factor}};
  if (rotary_dim != head_dim) cfg["partial_rotary_factor"] = static_cast<double>(rotary_dim) / static_cast<double>(head_dim);
  if (sliding_window) {
    cfg["sliding_window"] = *sliding_window;
    if (!arch->sliding_window_default_on) cfg["use_sliding_window"] = true;
  }
  if (!sliding_layers.empty()) {
    auto& types = cfg["layer_types"] = nlohmann::ordered_json::array();
    for (bool s : sliding_layers) types.push_back(s ? "sliding_attention" : "full_attention");
  }
  if (arch->is_moe()) cfg["norm_topk_prob"] = renormalize_top_k;
  if (bos_token_id) cfg["bos_token_id"] = *bos_token_id;
  if (!eos_token_ids.empty()) cfg["eos_token_id"] = eos_token_ids[0];
  if (pad_token_id) cfg["pad_token_id"] = *pad_token_id;
  if (arch->write_config) arch->write_config(*this, cfg);
  return cfg.dump(2) + "\n";
}

ModelConfig ModelConfig::load(const std::filesystem::path& model_dir) {
  auto path = model_dir / "config.json";
  if (!std::filesystem::exists(path)) fail(path.string(), "not found (is this a model directory?)");
  return parse(io::read_text_file(path), path.string());
}

}  // namespace anvil::model
