#include "model/config.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <numbers>

#include "io/atomic_file.h"
#include "io/gguf.h"
#include "util/error.h"

namespace anvil::model {
namespace {

using nlohmann::json;

int64_t required_int(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer() || it->get<int64_t>() <= 0)
    fail(where, std::string("missing or invalid \"") + key + "\" (a positive integer)");
  return it->get<int64_t>();
}

std::optional<int64_t> optional_int(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_array() && !it->empty() && (*it)[0].is_number_integer()) return (*it)[0].get<int64_t>();
  return std::nullopt;
}

double number_or(const json& j, const char* key, double fallback) {
  auto it = j.find(key);
  return (it != j.end() && it->is_number()) ? it->get<double>() : fallback;
}

void parse_rope(const json& j, RopeConfig& rope, const std::string& where) {
  // Newer transformers: rope_parameters {rope_theta, rope_type, ...}; older: rope_theta at the top
  // and rope_scaling {rope_type|type, factor, ...}.
  const json* params = nullptr;
  if (auto it = j.find("rope_parameters"); it != j.end() && it->is_object()) params = &*it;
  if (auto it = j.find("rope_scaling"); !params && it != j.end() && it->is_object()) params = &*it;
  rope.theta = number_or(j, "rope_theta", 10000.0);
  if (params) {
    rope.theta = number_or(*params, "rope_theta", rope.theta);
    std::string type = "default";
    if (auto t = params->find("rope_type"); t != params->end() && t->is_string()) type = t->get<std::string>();
    else if (auto t2 = params->find("type"); t2 != params->end() && t2->is_string()) type = t2->get<std::string>();
    if (type != "default" && type != "llama3")
      fail(where, "unsupported rope type '" + type + "' (supported: default, llama3)");
    rope.type = type;
    rope.factor = number_or(*params, "factor", 1.0);
    rope.low_freq_factor = number_or(*params, "low_freq_factor", 1.0);
    rope.high_freq_factor = number_or(*params, "high_freq_factor", 4.0);
    rope.original_max_position_embeddings =
        static_cast<int64_t>(number_or(*params, "original_max_position_embeddings", 8192));
  }
  if (!(rope.theta > 0)) fail(where, "rope_theta must be positive");
}

}  // namespace

ModelConfig ModelConfig::parse(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail(where, std::string("not valid JSON (") + e.what() + ")");
  }
  if (!j.is_object()) fail(where, "not a JSON object");
  ModelConfig c;
  c.raw_json = text;
  auto mt = j.find("model_type");
  if (mt == j.end() || !mt->is_string()) fail(where, "missing \"model_type\"");
  c.model_type = mt->get<std::string>();
  c.arch = find_architecture(c.model_type);
  if (!c.arch) {
    std::string list;
    for (auto t : supported_model_types()) list += (list.empty() ? "" : ", ") + std::string(t);
    fail(where, "unsupported architecture '" + c.model_type + "' (supported: " + list + ")");
  }
  c.hidden_size = required_int(j, "hidden_size", where);
  c.intermediate_size = required_int(j, "intermediate_size", where);
  c.num_layers = required_int(j, "num_hidden_layers", where);
  c.num_heads = required_int(j, "num_attention_heads", where);
  c.num_kv_heads = optional_int(j, "num_key_value_heads").value_or(c.num_heads);
  c.vocab_size = required_int(j, "vocab_size", where);
  c.head_dim = optional_int(j, "head_dim").value_or(c.hidden_size / c.num_heads);
  c.max_position_embeddings = optional_int(j, "max_position_embeddings").value_or(4096);
  if (c.num_kv_heads <= 0 || c.num_heads % c.num_kv_heads != 0)
    fail(where, "num_attention_heads must be a multiple of num_key_value_heads");
  if (c.head_dim <= 0 || c.head_dim % 2 != 0) fail(where, "head_dim must be a positive even number");
  c.rms_norm_eps = number_or(j, "rms_norm_eps", 1e-6);
  parse_rope(j, c.rope, where);
  c.tie_word_embeddings = j.value("tie_word_embeddings", c.arch->default_tie_word_embeddings);
  c.attention_bias = j.value("attention_bias", c.arch->default_attention_bias);
  if (auto hidden_act = j.find("hidden_act"); hidden_act != j.end() && hidden_act->is_string() &&
                                              hidden_act->get<std::string>() != "silu")
    fail(where, "unsupported hidden_act '" + hidden_act->get<std::string>() + "' (only silu)");
  bool use_sliding = j.value("use_sliding_window", c.model_type != "qwen2");
  if (use_sliding) c.sliding_window = optional_int(j, "sliding_window");
  if (c.arch->ffn == FfnKind::SparseMoE) {
    c.num_experts = required_int(j, "num_local_experts", where);
    c.num_experts_per_tok = required_int(j, "num_experts_per_tok", where);
    if (c.num_experts_per_tok > c.num_experts) fail(where, "num_experts_per_tok exceeds num_local_experts");
  }
  if (auto d = j.find("dtype"); d != j.end() && d->is_string()) c.dtype = d->get<std::string>();
  else if (auto td = j.find("torch_dtype"); td != j.end() && td->is_string()) c.dtype = td->get<std::string>();
  c.bos_token_id = optional_int(j, "bos_token_id");
  c.pad_token_id = optional_int(j, "pad_token_id");
  if (auto e = j.find("eos_token_id"); e != j.end()) {
    if (e->is_number_integer()) c.eos_token_ids.push_back(e->get<int64_t>());
    else if (e->is_array())
      for (const auto& v : *e)
        if (v.is_number_integer()) c.eos_token_ids.push_back(v.get<int64_t>());
  }
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
  auto integer = [&](const std::string& key, std::optional<int64_t> fallback = std::nullopt) {
    const io::GgufValue* v = f.find(arch + "." + key);
    if (v && v->as_int() && *v->as_int() > 0) return *v->as_int();
    if (fallback) return *fallback;
    fail(where, "missing or invalid " + arch + "." + key);
  };
  const int64_t experts = integer("expert_count", 0);
  c.arch = find_gguf_architecture(arch, experts > 0 ? FfnKind::SparseMoE : FfnKind::Dense);
  if (!c.arch)
    fail(where, "unsupported GGUF architecture '" + arch + "'" + (experts > 0 ? " with experts" : "") +
                    " (supported: llama, qwen2, llama with experts = Mixtral)");
  c.model_type = std::string(c.arch->model_type);
  if (experts > 0) {
    c.num_experts = experts;
    c.num_experts_per_tok = integer("expert_used_count");
    if (c.num_experts_per_tok > c.num_experts) fail(where, arch + ".expert_used_count exceeds expert_count");
  }
  // Stacked expert tensors must hold exactly expert_count experts (readers slice them by it).
  for (const auto& t : f.tensors())
    if (t.name.ends_with("_exps.weight") &&
        (t.dims.size() != 3 || static_cast<int64_t>(t.dims[2]) != experts))
      fail(where, "tensor '" + t.name + "' stacks " + (t.dims.size() == 3 ? std::to_string(t.dims[2]) : "no") +
                      " experts, but " + arch + ".expert_count is " + std::to_string(experts));
  c.hidden_size = integer("embedding_length");
  c.num_layers = integer("block_count");
  c.intermediate_size = integer("feed_forward_length");
  c.num_heads = integer("attention.head_count");
  c.num_kv_heads = integer("attention.head_count_kv", c.num_heads);
  c.head_dim = integer("attention.key_length", c.hidden_size / c.num_heads);
  c.max_position_embeddings = integer("context_length", 4096);
  if (c.num_heads % c.num_kv_heads != 0) fail(where, "head_count is not a multiple of head_count_kv");
  if (const io::GgufValue* v = f.find(arch + ".attention.layer_norm_rms_epsilon"); v && v->as_float())
    c.rms_norm_eps = *v->as_float();
  if (const io::GgufValue* v = f.find(arch + ".rope.freq_base"); v && v->as_float()) c.rope.theta = *v->as_float();
  const io::GgufTensorInfo* embd = f.find_tensor("token_embd.weight");
  if (!embd || embd->dims.size() != 2) fail(where, "missing token_embd.weight");
  c.vocab_size = static_cast<int64_t>(embd->dims[1]);
  c.tie_word_embeddings = f.find_tensor("output.weight") == nullptr;
  if (const io::GgufTensorInfo* rf = f.find_tensor("rope_freqs.weight")) {
    if (rf->type != 0 || rf->dims.size() != 1 || static_cast<int64_t>(rf->dims[0]) * 2 != c.head_dim)
      fail(where, "rope_freqs.weight must be F32 with head_dim / 2 entries");
    const float* v = reinterpret_cast<const float*>(rf->data.data());
    c.rope.freq_divisors.assign(v, v + rf->dims[0]);
  }
  c.attention_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
  // llama.cpp computes rotary frequencies in fp32 without the bf16 rounding transformers applies.
  c.dtype = "float32";
  if (const io::GgufValue* v = f.find("tokenizer.ggml.bos_token_id"); v && v->as_int()) c.bos_token_id = *v->as_int();
  if (const io::GgufValue* v = f.find("tokenizer.ggml.eos_token_id"); v && v->as_int()) c.eos_token_ids = {*v->as_int()};
  if (const io::GgufValue* v = f.find("tokenizer.ggml.padding_token_id"); v && v->as_int()) c.pad_token_id = *v->as_int();
  return c;
}

ModelConfig ModelConfig::load(const std::filesystem::path& model_dir) {
  auto path = model_dir / "config.json";
  if (!std::filesystem::exists(path)) fail(path.string(), "not found (is this a model directory?)");
  return parse(io::read_text_file(path), path.string());
}

}  // namespace anvil::model
