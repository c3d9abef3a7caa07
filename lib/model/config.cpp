#include "model/config.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <numbers>

#include "io/atomic_file.h"
#include "io/gguf.h"
#include "util/error.h"
#include "util/json_reader.h"

namespace anvil::model {
namespace {

using nlohmann::json;

// Bounds on sizes read from a config: far above any real model (Llama-3-405B: hidden 16,384,
// 126 layers, vocab 128,256), low enough that products of them cannot overflow int64 and that a
// typo like 10^12 is an error instead of a truncated GGUF field.
constexpr int64_t kMaxWidth = 1 << 20;      // hidden, intermediate, head_dim
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxHeads = 1 << 14;
constexpr int64_t kMaxVocab = 1 << 24;
constexpr int64_t kMaxExperts = 1 << 12;
constexpr int64_t kMaxPositions = int64_t{1} << 32;

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

void parse_rope(const util::JsonFields& top, const json& j, RopeConfig& rope, const std::string& where) {
  // Newer transformers: rope_parameters {rope_theta, rope_type, ...}; older: rope_theta at the top
  // and rope_scaling {rope_type|type, factor, ...}.
  const char* params_key = nullptr;
  if (auto it = j.find("rope_parameters"); it != j.end() && !it->is_null()) params_key = "rope_parameters";
  else if (auto it2 = j.find("rope_scaling"); it2 != j.end() && !it2->is_null()) params_key = "rope_scaling";
  rope.theta = top.number_or("rope_theta", 10000.0, 1e-6, 1e30);
  if (params_key) {
    const util::JsonFields params(j[params_key], where, std::string(params_key) + ".");
    rope.theta = params.number_or("rope_theta", rope.theta, 1e-6, 1e30);
    std::string type = params.string_or("rope_type", params.string_or("type", "default"));
    if (type != "default" && type != "llama3")
      fail(where, "unsupported rope type '" + type + "' (supported: default, llama3)");
    rope.type = type;
    rope.factor = params.number_or("factor", 1.0, 1e-6, 1e6);
    rope.low_freq_factor = params.number_or("low_freq_factor", 1.0, 1e-6, 1e6);
    rope.high_freq_factor = params.number_or("high_freq_factor", 4.0, 1e-6, 1e6);
    if (type == "llama3" && !(rope.high_freq_factor > rope.low_freq_factor))
      fail(where, "\"" + std::string(params_key) + ".high_freq_factor\" must exceed low_freq_factor");
    rope.original_max_position_embeddings =
        params.integer_or("original_max_position_embeddings", 8192, 1, kMaxPositions);
  }
}

}  // namespace

void ModelConfig::validate(const std::string& where) const {
  auto bad = [&](const std::string& what) { fail(where, what); };
  if (num_kv_heads <= 0 || num_heads % num_kv_heads != 0)
    bad("the attention head count (" + std::to_string(num_heads) + ") must be a positive multiple of the key/value head count (" +
        std::to_string(num_kv_heads) + ")");
  if (head_dim <= 0 || head_dim % 2 != 0 || head_dim > kMaxWidth)
    bad("head_dim must be a positive even number, not " + std::to_string(head_dim));
  if (num_heads * head_dim > 16 * kMaxWidth) bad("head count x head_dim is implausibly large");
  if (!(std::isfinite(rms_norm_eps) && rms_norm_eps > 0 && rms_norm_eps < 1))
    bad("the norm epsilon must be a finite number in (0, 1)");
  if (!(std::isfinite(rope.theta) && rope.theta > 0)) bad("the rotary base (rope_theta) must be a positive finite number");
  if (sliding_window && *sliding_window < 1) bad("sliding_window must be at least 1 (or null for none)");
  auto token = [&](const std::optional<int64_t>& id, const char* name) {
    if (id && (*id < 0 || *id >= vocab_size))
      bad(std::string(name) + " " + std::to_string(*id) + " is outside the vocabulary (size " + std::to_string(vocab_size) + ")");
  };
  token(bos_token_id, "bos_token_id");
  for (int64_t e : eos_token_ids) token(e, "eos_token_id");
  if (arch && arch->ffn == FfnKind::SparseMoE && !(num_experts_per_tok >= 1 && num_experts_per_tok <= num_experts))
    bad("experts used per token (" + std::to_string(num_experts_per_tok) + ") must be in [1, expert count " +
        std::to_string(num_experts) + "]");
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
  if (!c.arch) {
    std::string list;
    for (auto t : supported_model_types()) list += (list.empty() ? "" : ", ") + std::string(t);
    fail(where, "unsupported architecture '" + c.model_type + "' (supported: " + list + ")");
  }
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
  c.rms_norm_eps = f.number_or("rms_norm_eps", 1e-6, 1e-30, 0.5);
  parse_rope(f, j, c.rope, where);
  c.tie_word_embeddings = f.boolean_or("tie_word_embeddings", c.arch->default_tie_word_embeddings);
  c.attention_bias = f.boolean_or("attention_bias", c.arch->default_attention_bias);
  if (const std::string act = f.string_or("hidden_act", "silu"); act != "silu")
    fail(where, "unsupported hidden_act '" + act + "' (only silu)");
  const bool use_sliding = f.boolean_or("use_sliding_window", c.model_type != "qwen2");
  if (use_sliding) c.sliding_window = f.optional_integer("sliding_window", 1, kMaxPositions);
  if (c.arch->ffn == FfnKind::SparseMoE) {
    c.num_experts = f.integer("num_local_experts", 1, kMaxExperts);
    c.num_experts_per_tok = f.integer("num_experts_per_tok", 1, kMaxExperts);
    if (c.num_experts_per_tok > c.num_experts) fail(where, "num_experts_per_tok exceeds num_local_experts");
  }
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
  // Every key is checked for type and range before use; a key that is present but wrong is an
  // error, never a silent default.
  auto integer = [&](const std::string& key, std::optional<int64_t> fallback = std::nullopt, int64_t hi = kMaxWidth) {
    const std::string full = arch + "." + key;
    const io::GgufValue* v = f.find(full);
    if (!v) {
      if (fallback) return *fallback;
      fail(where, "missing " + full);
    }
    if (!v->as_int() || *v->as_int() < 1 || *v->as_int() > hi)
      fail(where, full + " must be an integer in [1, " + std::to_string(hi) + "]");
    return *v->as_int();
  };
  auto number = [&](const std::string& key, double fallback, double lo, double hi) {
    const std::string full = arch + "." + key;
    const io::GgufValue* v = f.find(full);
    if (!v) return fallback;
    if (!v->as_float() || !std::isfinite(*v->as_float()) || *v->as_float() < lo || *v->as_float() > hi)
      fail(where, full + " must be a finite number in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return *v->as_float();
  };
  auto token_id = [&](const char* key) -> std::optional<int64_t> {
    const io::GgufValue* v = f.find(key);
    if (!v) return std::nullopt;
    if (!v->as_int()) fail(where, std::string(key) + " must be an integer");
    return *v->as_int();
  };
  // expert_count 0 (written by some converters for dense models) means dense.
  const io::GgufValue* expert_value = f.find(arch + ".expert_count");
  const int64_t experts = expert_value && expert_value->as_int() == 0 ? 0
                          : expert_value                              ? integer("expert_count", 0, kMaxExperts)
                                                                      : 0;
  c.arch = find_gguf_architecture(arch, experts > 0 ? FfnKind::SparseMoE : FfnKind::Dense);
  if (!c.arch)
    fail(where, "unsupported GGUF architecture '" + arch + "'" + (experts > 0 ? " with experts" : "") +
                    " (supported: llama, qwen2, llama with experts = Mixtral)");
  c.model_type = std::string(c.arch->model_type);
  if (experts > 0) {
    c.num_experts = experts;
    c.num_experts_per_tok = integer("expert_used_count", std::nullopt, kMaxExperts);
    if (c.num_experts_per_tok > c.num_experts) fail(where, arch + ".expert_used_count exceeds expert_count");
  }
  // Stacked expert tensors must hold exactly expert_count experts (readers slice them by it).
  for (const auto& t : f.tensors())
    if (t.name.ends_with("_exps.weight") &&
        (t.dims.size() != 3 || static_cast<int64_t>(t.dims[2]) != experts))
      fail(where, "tensor '" + t.name + "' stacks " + (t.dims.size() == 3 ? std::to_string(t.dims[2]) : "no") +
                      " experts, but " + arch + ".expert_count is " + std::to_string(experts));
  c.hidden_size = integer("embedding_length");
  c.num_layers = integer("block_count", std::nullopt, kMaxLayers);
  c.intermediate_size = integer("feed_forward_length");
  c.num_heads = integer("attention.head_count", std::nullopt, kMaxHeads);
  c.num_kv_heads = integer("attention.head_count_kv", c.num_heads, kMaxHeads);
  if (!f.find(arch + ".attention.key_length") && c.hidden_size % c.num_heads != 0)
    fail(where, arch + ".embedding_length is not a multiple of " + arch + ".attention.head_count");
  c.head_dim = integer("attention.key_length", c.hidden_size / c.num_heads);
  if (f.find(arch + ".attention.value_length") && integer("attention.value_length") != c.head_dim)
    fail(where, arch + ".attention.value_length differs from key_length (not supported)");
  // anvil rotates the whole head; a partial rotary (or 0) is another family's layout.
  if (f.find(arch + ".rope.dimension_count") && integer("rope.dimension_count") != c.head_dim)
    fail(where, arch + ".rope.dimension_count must equal the head dimension (" + std::to_string(c.head_dim) + ")");
  c.max_position_embeddings = integer("context_length", 4096, kMaxPositions);
  c.rms_norm_eps = number("attention.layer_norm_rms_epsilon", c.rms_norm_eps, 1e-30, 0.5);
  c.rope.theta = number("rope.freq_base", c.rope.theta, 1e-6, 1e30);
  const io::GgufTensorInfo* embd = f.find_tensor("token_embd.weight");
  if (!embd || embd->dims.size() != 2) fail(where, "missing token_embd.weight");
  if (embd->dims[1] < 1 || embd->dims[1] > static_cast<uint64_t>(kMaxVocab))
    fail(where, "token_embd.weight has an implausible vocabulary size");
  c.vocab_size = static_cast<int64_t>(embd->dims[1]);
  c.tie_word_embeddings = f.find_tensor("output.weight") == nullptr;
  if (const io::GgufTensorInfo* rf = f.find_tensor("rope_freqs.weight")) {
    if (rf->type != 0 || rf->dims.size() != 1 || static_cast<int64_t>(rf->dims[0]) * 2 != c.head_dim)
      fail(where, "rope_freqs.weight must be F32 with head_dim / 2 entries");
    const float* v = reinterpret_cast<const float*>(rf->data.data());
    c.rope.freq_divisors.assign(v, v + rf->dims[0]);
    for (float d : c.rope.freq_divisors)
      if (!(std::isfinite(d) && d > 0)) fail(where, "rope_freqs.weight holds a divisor that is not a positive finite number");
  }
  c.attention_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
  // llama.cpp computes rotary frequencies in fp32 without the bf16 rounding transformers applies.
  c.dtype = "float32";
  c.bos_token_id = token_id("tokenizer.ggml.bos_token_id");
  if (auto eos = token_id("tokenizer.ggml.eos_token_id")) c.eos_token_ids = {*eos};
  c.pad_token_id = token_id("tokenizer.ggml.padding_token_id");
  if (c.pad_token_id && (*c.pad_token_id < 0 || *c.pad_token_id >= c.vocab_size)) c.pad_token_id.reset();
  c.validate(where);
  return c;
}

ModelConfig ModelConfig::load(const std::filesystem::path& model_dir) {
  auto path = model_dir / "config.json";
  if (!std::filesystem::exists(path)) fail(path.string(), "not found (is this a model directory?)");
  return parse(io::read_text_file(path), path.string());
}

}  // namespace anvil::model
