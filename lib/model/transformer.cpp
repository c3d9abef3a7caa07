#include "model/transformer.h"

#include "model/tensor_shapes.h"

#include <ATen/core/grad_mode.h>  // at::GradMode (not reached through ATen.h in LibTorch 2.x)
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>

#include "io/checkpoint.h"
#include "model/dropout.h"
#include "model/layer_checkpoint.h"
#include "model/lora_adapter.h"
#include "model/tensor_bridge.h"
#include "quant/int_formats.h"
#include "util/error.h"

namespace anvil::model {
namespace {

std::string shape_str(at::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

at::Tensor dense_project(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias = {}) {
  // One row (decoding a token): a GEMV. As a GEMM with M = 1, OpenBLAS would re-pack the whole
  // weight matrix on every call, which made decoding 3x slower.
  if (x.numel() == x.size(-1) && x.device().is_cpu()) {
    auto y = at::mv(weight, x.reshape({-1}));
    if (bias.defined()) y.add_(bias);
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = weight.size(0);
    return y.view(shape);
  }
  return bias.defined() ? at::linear(x, weight, bias) : at::linear(x, weight);
}


// rotate_half(x) = cat(-x2, x1) on the last dimension, as in transformers.
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  int64_t half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half);
  auto x2 = x.narrow(-1, half, half);
  return x * cos + at::cat({-x2, x1}, -1) * sin;
}

}  // namespace

at::Tensor rope_inverse_frequencies(const ModelConfig& c) {
  auto f32 = at::TensorOptions().dtype(at::kFloat);
  auto exponents = at::arange(0, c.head_dim, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) /
                   static_cast<double>(c.head_dim);
  at::Tensor inv_freq = 1.0 / at::pow(c.rope.theta, exponents);
  if (c.rope.type == "llama3") {
    const double factor = c.rope.factor, low = c.rope.low_freq_factor, high = c.rope.high_freq_factor;
    const double old_ctx = static_cast<double>(c.rope.original_max_position_embeddings);
    const double low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
    auto wavelen = 2 * std::numbers::pi / inv_freq;
    auto scaled = at::where(wavelen > low_wavelen, inv_freq / factor, inv_freq);
    auto smooth = (old_ctx / wavelen - low) / (high - low);
    auto smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
    auto medium = at::logical_not(wavelen < high_wavelen).logical_and(at::logical_not(wavelen > low_wavelen));
    inv_freq = at::where(medium, smoothed, scaled);
  }
  if (!c.rope.freq_divisors.empty())  // llama.cpp's form of a frequency scaling (GGUF rope_freqs)
    inv_freq = inv_freq / at::tensor(c.rope.freq_divisors, at::TensorOptions().dtype(at::kFloat));
  // transformers casts the inv_freq buffer with the model: a bf16/f16 checkpoint loaded in its
  // own dtype sees rounded frequencies. Reproduce that so logits match to ~1e-5, not ~5e-2.
  if (c.dtype == "bfloat16") inv_freq = inv_freq.to(at::kBFloat16).to(at::kFloat);
  else if (c.dtype == "float16") inv_freq = inv_freq.to(at::kHalf).to(at::kFloat);
  return inv_freq.to(f32.dtype()).contiguous();
}

Transformer::Transformer(ModelConfig config, const WeightProvider& get, const WeightExists& has,
                         const LoadOptions& options)
    : config_(std::move(config)), options_(options) {
  const ModelConfig& c = config_;
  auto fetch = [&](const std::string& name, std::vector<int64_t> shape) {
    if (!has(name)) fail("checkpoint", "tensor '" + name + "' is missing (required by " + c.model_type + ")");
    at::Tensor t = get(name);
    if (t.sizes() != at::IntArrayRef(shape))
      fail("checkpoint", "tensor '" + name + "' has shape " + shape_str(t.sizes()) + " but config.json implies " +
                             shape_str(shape));
    return t;
  };
  auto fetch_linear = [&](const std::string& prefix, int64_t out, int64_t in) {
    LinearWeights w;
    w.weight = fetch(prefix + ".weight", {out, in});
    if (has(prefix + ".bias")) w.bias = fetch(prefix + ".bias", {out});
    return w;
  };
  auto fuse = [&](std::vector<LinearWeights> parts) {
    LinearWeights f;
    std::vector<at::Tensor> ws, bs;
    bool any_bias = false;
    for (auto& p : parts) any_bias |= p.bias.defined();
    for (auto& p : parts) {
      ws.push_back(p.weight);
      if (any_bias) bs.push_back(p.bias.defined() ? p.bias : at::zeros({p.weight.size(0)}, p.weight.options()));
    }
    f.weight = at::cat(ws, 0).contiguous();
    if (any_bias) f.bias = at::cat(bs, 0).contiguous();
    return f;
  };

  const int64_t H = c.hidden_size, D = c.head_dim, F = c.intermediate_size;
  embed_ = fetch("model.embed_tokens.weight", {c.vocab_size, H});
  final_norm_ = fetch("model.norm.weight", {H});
  if (has("lm_head.weight") && !c.tie_word_embeddings) lm_head_ = fetch("lm_head.weight", {c.vocab_size, H});
  else if (c.tie_word_embeddings) lm_head_ = embed_;
  else fail("checkpoint", "tensor 'lm_head.weight' is missing and tie_word_embeddings is false");

  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LayerWeights L;
    L.attn_norm = fetch(p + "input_layernorm.weight", {H});
    L.ffn_norm = fetch(p + "post_attention_layernorm.weight", {H});
    auto q = fetch_linear(p + "self_attn.q_proj", c.num_heads * D, H);
    if (c.attention_bias && !q.bias.defined())
      fail("checkpoint", "tensor '" + p + "self_attn.q_proj.bias' is missing (config says attention_bias)");
    L.qkv = fuse({q, fetch_linear(p + "self_attn.k_proj", c.num_kv_heads * D, H),
                  fetch_linear(p + "self_attn.v_proj", c.num_kv_heads * D, H)});
    L.o = fetch_linear(p + "self_attn.o_proj", H, c.num_heads * D);
    if (c.arch->ffn == FfnKind::Dense) {
      L.gate_up = fuse({fetch_linear(p + "mlp.gate_proj", F, H), fetch_linear(p + "mlp.up_proj", F, H)});
      L.down = fetch_linear(p + "mlp.down_proj", H, F);
    } else {
      L.router = fetch(p + std::string(c.arch->moe_router), {c.num_experts, H});
      for (int64_t e = 0; e < c.num_experts; ++e) {
        auto name = [&](std::string_view pattern) {
          std::string s(pattern);
          s.replace(s.find("{e}"), 3, std::to_string(e));
          return p + s.substr(0, s.size() - std::string(".weight").size());
        };
        ExpertWeights ew;
        ew.gate_up = fuse({fetch_linear(name(c.arch->moe_gate), F, H), fetch_linear(name(c.arch->moe_up), F, H)});
        ew.down = fetch_linear(name(c.arch->moe_down), H, F);
        L.experts.push_back(std::move(ew));
      }
    }
    layers_.push_back(std::move(L));
  }
  inv_freq_ = rope_inverse_frequencies(c).to(options_.device);
  index_linear_slots();
}

void Transformer::index_linear_slots() {
  const ModelConfig& c = config_;
  const int64_t D = c.head_dim, F = c.intermediate_size;
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LayerWeights& L = layers_[i];
    auto add = [&](const std::string& name, LinearWeights& w, int64_t offset, int64_t rows) {
      slots_.push_back({p + name + ".weight", LinearSlot{&w, offset, rows}});
      fed_by_[&w].push_back(p + name + ".weight");
    };
    add("self_attn.q_proj", L.qkv, 0, c.num_heads * D);
    add("self_attn.k_proj", L.qkv, c.num_heads * D, c.num_kv_heads * D);
    add("self_attn.v_proj", L.qkv, (c.num_heads + c.num_kv_heads) * D, c.num_kv_heads * D);
    add("self_attn.o_proj", L.o, 0, c.hidden_size);
    if (c.arch->ffn == FfnKind::Dense) {
      add("mlp.gate_proj", L.gate_up, 0, F);
      add("mlp.up_proj", L.gate_up, F, F);
      add("mlp.down_proj", L.down, 0, c.hidden_size);
      continue;
    }
    for (int64_t e = 0; e < c.num_experts; ++e) {
      auto name = [&](std::string_view pattern) {
        std::string s(pattern);
        s.replace(s.find("{e}"), 3, std::to_string(e));
        return s.substr(0, s.size() - std::string(".weight").size());
      };
      add(name(c.arch->moe_gate), L.experts[e].gate_up, 0, F);
      add(name(c.arch->moe_up), L.experts[e].gate_up, F, F);
      add(name(c.arch->moe_down), L.experts[e].down, 0, c.hidden_size);
    }
  }
}

std::vector<std::string> Transformer::adaptable_weights() const {
  std::vector<std::string> names;
  for (const auto& [name, _] : slots_) names.push_back(name);
  return names;
}

std::vector<int64_t> Transformer::adaptable_shape(const std::string& weight_name) const {
  for (const auto& [name, slot] : slots_)
    if (name == weight_name) return {slot.rows, slot.linear->weight.size(1)};
  fail("lora", "'" + weight_name + "' is not a linear layer of this model");
}

void Transformer::attach_lora(const std::string& weight_name, const at::Tensor& A, const at::Tensor& B, double scale,
                              double dropout) {
  for (auto& [name, slot] : slots_) {
    if (name != weight_name) continue;
    const int64_t in = slot.linear->weight.size(1);
    if (A.dim() != 2 || B.dim() != 2 || A.size(1) != in || B.size(0) != slot.rows || B.size(1) != A.size(0))
      fail("lora", "A/B shapes do not fit '" + weight_name + "'");
    auto& slices = slot.linear->lora;
    LoraSlice slice{slot.offset, slot.rows, A, B, scale, dropout};
    // Kept sorted by offset so project() can fill the gaps between slices with zeros.
    auto pos = std::find_if(slices.begin(), slices.end(), [&](const LoraSlice& s) { return s.offset >= slot.offset; });
    if (pos != slices.end() && pos->offset == slot.offset) *pos = slice;
    else slices.insert(pos, slice);
    return;
  }
  fail("lora", "'" + weight_name + "' is not a linear layer of this model");
}

at::Tensor Transformer::project(const at::Tensor& x, const LinearWeights& w) const {
  if (observer_) observer_(fed_by_.at(&w), x);
  at::Tensor y = dense_project(x, w.weight, w.bias);
  if (w.lora.empty()) return y;
  // One update per fused part (q, k, v or gate, up), each with its own dropout, concatenated
  // with zeros over the parts that have none, then added once.
  std::vector<at::Tensor> parts;
  int64_t covered = 0;
  auto zeros = [&](int64_t n) {
    std::vector<int64_t> shape(y.sizes().begin(), y.sizes().end());
    shape.back() = n;
    return at::zeros(shape, y.options());
  };
  for (const auto& s : w.lora) {
    if (s.offset > covered) parts.push_back(zeros(s.offset - covered));
    at::Tensor in = training_ && s.dropout > 0 ? dropout(x, s.dropout) : x;
    parts.push_back(at::linear(at::linear(in, s.A), s.B).mul(s.scale).to(y.scalar_type()));
    covered = s.offset + s.rows;
  }
  if (covered < y.size(-1)) parts.push_back(zeros(y.size(-1) - covered));
  return y + (parts.size() == 1 ? parts[0] : at::cat(parts, -1));
}

std::unique_ptr<Transformer> Transformer::from_checkpoint(const ModelConfig& config, const io::Checkpoint& ckpt,
                                                          const LoadOptions& options, const LoraAdapter* adapter) {
  if (adapter) adapter->check_fits(config, ckpt);
  auto get = [&](const std::string& name) {
    if (adapter)
      if (at::Tensor d = adapter->delta(name); d.defined())
        return (load_tensor(ckpt.get(name), at::kFloat) + d).to(options.device, options.compute_dtype).contiguous();
    return load_tensor(ckpt.get(name), options.compute_dtype, options.device);
  };
  auto has = [&](const std::string& name) { return ckpt.contains(name); };
  return std::make_unique<Transformer>(config, get, has, options);
}

std::unique_ptr<Transformer> Transformer::load(const std::filesystem::path& dir, const LoadOptions& options,
                                               const LoraAdapter* adapter) {
  ModelConfig config = ModelConfig::load(dir);
  io::Checkpoint ckpt(dir);
  auto quantized = quant::detect_int_checkpoint(dir);
  if (!quantized) {
    check_checkpoint_shapes(config, ckpt, (dir / "config.json").string());
    return from_checkpoint(config, ckpt, options, adapter);
  }
  // INT4/INT8 safetensors (compressed-tensors, GPTQ): dequantized as they load.
  if (adapter) fail(dir.string(), "applying an adapter to an integer-quantized model is not supported");
  auto get = [&](const std::string& name) {
    if (quant::has_int_weight(ckpt, name, *quantized))
      return quant::load_int_weight(ckpt, name, *quantized).to(options.device, options.compute_dtype).contiguous();
    return load_tensor(ckpt.get(name), options.compute_dtype, options.device);
  };
  auto has = [&](const std::string& name) { return ckpt.contains(name) || quant::has_int_weight(ckpt, name, *quantized); };
  return std::make_unique<Transformer>(config, get, has, options);
}

KVCache Transformer::new_cache(int64_t batch, int64_t capacity) const {
  KVCache cache;
  cache.capacity = capacity;
  auto opts = at::TensorOptions().dtype(options_.compute_dtype).device(options_.device);
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    cache.keys.push_back(at::empty({batch, config_.num_kv_heads, capacity, config_.head_dim}, opts));
    cache.values.push_back(at::empty({batch, config_.num_kv_heads, capacity, config_.head_dim}, opts));
  }
  return cache;
}

at::Tensor Transformer::rms_norm(const at::Tensor& x, const at::Tensor& weight) const {
  // Half types normalize in fp32 (as transformers does); fp32/fp64 stay as they are.
  auto xf = (x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf) ? x.to(at::kFloat) : x;
  auto normed = xf * at::rsqrt(xf.pow(2).mean({-1}, /*keepdim=*/true) + config_.rms_norm_eps);
  return weight * normed.to(x.scalar_type());
}

at::Tensor Transformer::attention(const at::Tensor& x, const LayerWeights& w, size_t layer, int64_t start,
                                  KVCache* cache) const {
  const ModelConfig& c = config_;
  const int64_t B = x.size(0), T = x.size(1), D = c.head_dim, NH = c.num_heads, NKV = c.num_kv_heads;
  const int64_t G = NH / NKV;
  auto qkv = project(x, w.qkv);
  auto q = qkv.narrow(-1, 0, NH * D).view({B, T, NH, D}).transpose(1, 2);
  auto k = qkv.narrow(-1, NH * D, NKV * D).view({B, T, NKV, D}).transpose(1, 2);
  auto v = qkv.narrow(-1, (NH + NKV) * D, NKV * D).view({B, T, NKV, D}).transpose(1, 2);

  auto positions = at::arange(start, start + T, at::TensorOptions().dtype(at::kFloat).device(options_.device));
  auto freqs = at::outer(positions, inv_freq_);
  auto emb = at::cat({freqs, freqs}, -1);
  auto cos = emb.cos().to(x.scalar_type()), sin = emb.sin().to(x.scalar_type());
  q = apply_rope(q, cos, sin);
  k = apply_rope(k, cos, sin);

  int64_t S = start + T;
  if (cache) {
    if (S > cache->capacity) fail("generate", "KV cache capacity " + std::to_string(cache->capacity) + " exceeded");
    cache->keys[layer].narrow(2, start, T).copy_(k);
    cache->values[layer].narrow(2, start, T).copy_(v);
    k = cache->keys[layer].narrow(2, 0, S);
    v = cache->values[layer].narrow(2, 0, S);
  }

  // Additive mask [T, S]: query t (absolute position start+t) sees keys j <= start+t, and with a
  // sliding window only keys j > start+t-window.
  at::Tensor mask;
  const bool windowed = c.sliding_window && *c.sliding_window < S;
  if (T > 1 || windowed) {
    auto qpos = at::arange(start, S, at::TensorOptions().dtype(at::kLong).device(options_.device)).unsqueeze(1);
    auto kpos = at::arange(0, S, at::TensorOptions().dtype(at::kLong).device(options_.device)).unsqueeze(0);
    auto blocked = kpos > qpos;
    if (windowed) blocked = blocked.logical_or(kpos <= qpos - *c.sliding_window);
    mask = at::zeros({T, S}, x.options()).masked_fill(blocked, -std::numeric_limits<float>::infinity());
  }
  at::Tensor out;
#if TORCH_VERSION_MAJOR >= 2
  // Grouped-query attention as plain attention over repeated key/value heads.
  auto kr = G > 1 ? k.repeat_interleave(G, 1) : k;
  auto vr = G > 1 ? v.repeat_interleave(G, 1) : v;
  if (mask.defined() && !windowed && start == 0)
    out = at::scaled_dot_product_attention(q, kr, vr, {}, 0.0, /*is_causal=*/true);
  else
    out = at::scaled_dot_product_attention(q, kr, vr, mask.defined() ? c10::optional<at::Tensor>(mask) : c10::nullopt);
#else
  // Grouped-query attention without copying keys: the G query heads sharing a key/value head are
  // stacked along the sequence axis, so one batched GEMM serves the whole group.
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  auto qg = q.reshape({B, NKV, G * T, D});
  auto scores = at::matmul(qg, k.transpose(-1, -2)).mul_(scale);  // [B, NKV, G*T, S]
  if (mask.defined()) scores.view({B, NKV, G, T, S}).add_(mask);
  auto probs = at::softmax(scores, -1);
  out = at::matmul(probs, v).view({B, NH, T, D});
#endif
  out = out.transpose(1, 2).reshape({B, T, NH * D});
  return project(out, w.o);
}

at::Tensor Transformer::feed_forward(const at::Tensor& x, const LayerWeights& w) const {
  auto gu = project(x, w.gate_up);
  int64_t F = config_.intermediate_size;
  auto h = at::silu(gu.narrow(-1, 0, F)) * gu.narrow(-1, F, F);
  return project(h, w.down);
}

at::Tensor Transformer::moe(const at::Tensor& x, const LayerWeights& w) const {
  const int64_t H = config_.hidden_size, F = config_.intermediate_size, K = config_.num_experts_per_tok;
  auto flat = x.reshape({-1, H});
  auto router_logits = dense_project(flat, w.router);
  auto probs = at::softmax(router_logits.to(at::kFloat), -1);
  auto [top_w, top_i] = at::topk(probs, K, -1);
  top_w = (top_w / top_w.sum(-1, true)).to(x.scalar_type());
  auto out = at::zeros_like(flat);
  for (int64_t e = 0; e < static_cast<int64_t>(w.experts.size()); ++e) {
    auto hits = (top_i == e).nonzero();  // [n, 2]: token, slot
    if (hits.size(0) == 0) continue;
    auto tokens = hits.select(1, 0), slots = hits.select(1, 1);
    auto xe = flat.index_select(0, tokens);
    auto gu = project(xe, w.experts[e].gate_up);
    auto h = at::silu(gu.narrow(-1, 0, F)) * gu.narrow(-1, F, F);
    auto ye = project(h, w.experts[e].down) * top_w.index({tokens, slots}).unsqueeze(1);
    out.index_add_(0, tokens, ye);
  }
  return out.view(x.sizes());
}

at::Tensor Transformer::hidden_states(const at::Tensor& ids, KVCache* cache) const {
  if (ids.dim() != 2) fail("forward", "input ids must be [batch, seq]");
  // The last line of defence for ids from a stranger's tokenizer (the embedding lookup would
  // otherwise fail inside LibTorch): one reduction, negligible beside the forward pass.
  if (ids.numel() > 0) {
    const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    if (lo < 0 || hi >= config_.vocab_size)
      fail("token ids", "id " + std::to_string(lo < 0 ? lo : hi) + " is outside the model's vocabulary of " +
                            std::to_string(config_.vocab_size) + " (the tokenizer and the model disagree)");
  }
  int64_t start = cache ? cache->length : 0;
  auto h = at::embedding(embed_, ids.to(options_.device));
  const bool recompute = checkpoint_layers_ && !cache && at::GradMode::is_enabled();
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (!recompute) {
      h = layer_forward(h, i, start, cache);
      continue;
    }
    std::vector<at::Tensor> trainable;
    for (const auto* lin : {&layers_[i].qkv, &layers_[i].o, &layers_[i].gate_up, &layers_[i].down})
      for (const auto& s : lin->lora) trainable.insert(trainable.end(), {s.A, s.B});
    for (const auto& e : layers_[i].experts)
      for (const auto* lin : {&e.gate_up, &e.down})
        for (const auto& s : lin->lora) trainable.insert(trainable.end(), {s.A, s.B});
    h = checkpointed_call([this, i](const at::Tensor& x) { return layer_forward(x, i, 0, nullptr); }, h, trainable);
  }
  if (cache) cache->length = start + ids.size(1);
  return rms_norm(h, final_norm_);
}

at::Tensor Transformer::layer_forward(const at::Tensor& h, size_t i, int64_t start, KVCache* cache) const {
  const auto& L = layers_[i];
  auto x = h + attention(rms_norm(h, L.attn_norm), L, i, start, cache);
  auto normed = rms_norm(x, L.ffn_norm);
  return x + (config_.arch->ffn == FfnKind::Dense ? feed_forward(normed, L) : moe(normed, L));
}

at::Tensor Transformer::lm_head(const at::Tensor& hidden) const {
  if (observer_) observer_({"lm_head.weight"}, hidden);
  at::Tensor logits = dense_project(hidden, lm_head_);
  return logits.scalar_type() == at::kDouble ? logits : logits.to(at::kFloat);  // fp64 for gradient checks
}

at::Tensor Transformer::forward(const at::Tensor& ids, KVCache* cache) const {
  return lm_head(hidden_states(ids, cache));
}

int64_t Transformer::parameter_count() const {
  int64_t n = embed_.numel() + final_norm_.numel() + (config_.tie_word_embeddings ? 0 : lm_head_.numel());
  auto lin = [](const LinearWeights& w) { return w.weight.numel() + (w.bias.defined() ? w.bias.numel() : 0); };
  for (const auto& L : layers_) {
    n += L.attn_norm.numel() + L.ffn_norm.numel() + lin(L.qkv) + lin(L.o);
    if (L.gate_up.weight.defined()) n += lin(L.gate_up) + lin(L.down);
    if (L.router.defined()) n += L.router.numel();
    for (const auto& e : L.experts) n += lin(e.gate_up) + lin(e.down);
  }
  return n;
}

}  // namespace anvil::model
