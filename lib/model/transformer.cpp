#include "model/transformer.h"

#include "model/tensor_shapes.h"

#include <ATen/core/grad_mode.h>  // at::GradMode (not reached through ATen.h in LibTorch 2.x)
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <set>

#include "io/checkpoint.h"
#include "model/dropout.h"
#include "model/layer_checkpoint.h"
#include "model/lora_adapter.h"
#include "model/stored_linear.h"
#include "model/tensor_bridge.h"
#include "quant/int_formats.h"
#include "quant/int_matrix.h"
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

at::Tensor rope_inverse_frequencies(const ModelConfig& c, double theta) {
  auto f32 = at::TensorOptions().dtype(at::kFloat);
  const bool own_base = theta > 0;
  if (!own_base) theta = c.rope.theta;
  auto exponents = at::arange(0, c.rotary_dim, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) /
                   static_cast<double>(c.rotary_dim);
  at::Tensor inv_freq = 1.0 / at::pow(theta, exponents);
  if (c.rope.type == "llama3" && !own_base) {
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
  if (c.rope.type == "linear" && !own_base) inv_freq = inv_freq / c.rope.factor;  // positions / factor
  if (!c.rope.freq_divisors.empty() && !own_base)  // llama.cpp's form of a frequency scaling (GGUF rope_freqs)
    inv_freq = inv_freq / at::tensor(c.rope.freq_divisors, at::TensorOptions().dtype(at::kFloat));
  // transformers casts the inv_freq buffer with the model: a bf16/f16 checkpoint loaded in its
  // own dtype sees rounded frequencies. Reproduce that so logits match to ~1e-5, not ~5e-2.
  if (c.dtype == "bfloat16") inv_freq = inv_freq.to(at::kBFloat16).to(at::kFloat);
  else if (c.dtype == "float16") inv_freq = inv_freq.to(at::kHalf).to(at::kFloat);
  return inv_freq.to(f32.dtype()).contiguous();
}

std::vector<const LinearWeights*> LayerWeights::linears() const {
  std::vector<const LinearWeights*> out{&qkv, &o};
  for (const ExpertWeights* e : {&mlp, &shared})
    if (e->down.defined()) out.insert(out.end(), {&e->gate_up, &e->down});
  for (const auto& e : experts) out.insert(out.end(), {&e.gate_up, &e.down});
  return out;
}

Transformer::Transformer(ModelConfig config, const WeightProvider& get, const WeightExists& has,
                         const LoadOptions& options, const StoredWeightProvider& stored)
    : config_(std::move(config)), options_(options) {
  using R = TensorRole;
  const ModelConfig& c = config_;
  const Architecture& a = *c.arch;
  auto name_of = [&](R role, int64_t layer = -1, int64_t expert = -1) {
    return expand_name(a.hf_template(role), layer, expert);
  };
  auto fetch = [&](const std::string& name, std::vector<int64_t> shape) {
    if (!has(name)) fail("checkpoint", "tensor '" + name + "' is missing (required by " + c.model_type + ")");
    at::Tensor t = get(name);
    if (t.sizes() != at::IntArrayRef(shape))
      fail("checkpoint", "tensor '" + name + "' has shape " + shape_str(t.sizes()) + " but config.json implies " +
                             shape_str(shape));
    return t;
  };
  // Weights stay as stored where the source serves them in place and the product runs on the CPU in fp32.
  const bool in_place = stored && options.keep_stored && options.device.is_cpu() && options.compute_dtype == at::kFloat;
  auto fetch_stored = [&](const std::string& name, int64_t rows, int64_t cols) -> WeightMatrixPtr {
    if (!in_place || !has(name)) return nullptr;
    WeightMatrixPtr m = stored(name);
    if (m && (m->rows() != rows || m->cols() != cols))
      fail("checkpoint", "tensor '" + name + "' has shape " + shape_str({m->rows(), m->cols()}) +
                             " but config.json implies " + shape_str({rows, cols}));
    return m;
  };
  // A linear layer by role; its bias by the bias role when the family has one and the file holds it.
  auto fetch_linear = [&](R role, R bias_role, int64_t out, int64_t in, int64_t layer, int64_t expert = -1) {
    LinearWeights w;
    const std::string name = name_of(role, layer, expert);
    w.stored = fetch_stored(name, out, in);
    if (!w.stored) w.weight = fetch(name, {out, in});
    if (bias_role != R::Count && a.has(bias_role) && has(name_of(bias_role, layer)))
      w.bias = fetch(name_of(bias_role, layer), {out});
    return w;
  };
  // Stored parts are stacked in place; a mix of stored and dense parts is concatenated densely.
  auto fuse = [&](std::vector<LinearWeights> parts) {
    LinearWeights f;
    std::vector<at::Tensor> ws, bs;
    std::vector<WeightMatrixPtr> stacked;
    at::Tensor any_bias;
    for (auto& p : parts) {
      if (p.bias.defined()) any_bias = p.bias;
      if (p.stored) stacked.push_back(p.stored);
    }
    for (auto& p : parts) {
      if (stacked.size() != parts.size())
        ws.push_back(p.stored ? dequantize_matrix(*p.stored).to(options.device, options.compute_dtype) : p.weight);
      if (any_bias.defined()) bs.push_back(p.bias.defined() ? p.bias : at::zeros({p.out_features()}, any_bias.options()));
    }
    if (stacked.size() == parts.size()) f.stored = stacked_rows(stacked);
    else f.weight = at::cat(ws, 0).contiguous();
    if (any_bias.defined()) f.bias = at::cat(bs, 0).contiguous();
    return f;
  };
  // Gemma's (1 + w) is added once here, in at least fp32 as transformers computes it.
  auto fetch_norm = [&](R role, R bias_role, int64_t width, int64_t layer) {
    NormWeights n;
    if (!a.has(role)) return n;
    n.scale = fetch(name_of(role, layer), {width});
    if (a.norm == NormKind::RmsPlusOne) {
      const auto wide = n.scale.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
      n.scale = (n.scale.to(wide) + 1).contiguous();
    }
    if (a.norm == NormKind::LayerNorm && bias_role != R::Count && a.has(bias_role))
      n.bias = fetch(name_of(bias_role, layer), {width});
    return n;
  };
  // A gated MLP from separate gate/up, fused gate/up, or an ungated up; `ffn` wide.
  auto fetch_mlp = [&](R gate, R up, R down, int64_t ffn, int64_t layer, int64_t expert = -1) {
    ExpertWeights m;
    const int64_t H = c.hidden_size;
    if (a.has(R::FfnGateUp) && gate == R::FfnGate) m.gate_up = fetch_linear(R::FfnGateUp, R::Count, 2 * ffn, H, layer);
    else if (a.gated_ffn)
      m.gate_up = fuse({fetch_linear(gate, R::Count, ffn, H, layer, expert), fetch_linear(up, R::Count, ffn, H, layer, expert)});
    else m.gate_up = fetch_linear(up, R::FfnUpBias, ffn, H, layer, expert);
    m.down = fetch_linear(down, down == R::FfnDown ? R::FfnDownBias : R::Count, H, ffn, layer, expert);
    return m;
  };

  const int64_t H = c.hidden_size, D = c.head_dim, Q = c.num_heads * D, KV = c.num_kv_heads * D;
  embed_stored_ = fetch_stored(name_of(R::TokenEmbedding), c.vocab_size, H);
  if (!embed_stored_) embed_ = fetch(name_of(R::TokenEmbedding), {c.vocab_size, H});
  final_norm_ = fetch_norm(R::OutputNorm, R::OutputNormBias, H, -1);
  if (!c.tie_word_embeddings && has(name_of(R::Output))) {
    lm_head_.stored = fetch_stored(name_of(R::Output), c.vocab_size, H);
    if (!lm_head_.stored) lm_head_.weight = fetch(name_of(R::Output), {c.vocab_size, H});
  } else if (c.tie_word_embeddings) {
    lm_head_.weight = embed_;
    lm_head_.stored = embed_stored_;
  } else fail("checkpoint", "tensor '" + name_of(R::Output) + "' is missing and tie_word_embeddings is false");
  if (a.has(R::OutputBias) && has(name_of(R::OutputBias))) lm_head_.bias = fetch(name_of(R::OutputBias), {c.vocab_size});

  for (int64_t i = 0; i < c.num_layers; ++i) {
    LayerWeights L;
    L.attn_norm = fetch_norm(R::AttnNorm, R::AttnNormBias, H, i);
    L.attn_post_norm = fetch_norm(R::AttnPostNorm, R::Count, H, i);
    L.ffn_norm = fetch_norm(R::FfnNorm, R::Count, H, i);
    L.ffn_post_norm = fetch_norm(R::FfnPostNorm, R::Count, H, i);
    if (a.qk_norm) {
      L.q_norm = fetch_norm(R::AttnQNorm, R::Count, D, i);
      L.k_norm = fetch_norm(R::AttnKNorm, R::Count, D, i);
    }
    if (a.has(R::AttnQkv)) {
      L.qkv = fetch_linear(R::AttnQkv, R::Count, Q + 2 * KV, H, i);
    } else {
      auto q = fetch_linear(R::AttnQ, R::AttnQBias, Q, H, i);
      if (c.attention_bias && !q.bias.defined())
        fail("checkpoint", "tensor '" + name_of(R::AttnQBias, i) + "' is missing (config says attention_bias)");
      L.qkv = fuse({q, fetch_linear(R::AttnK, R::AttnKBias, KV, H, i), fetch_linear(R::AttnV, R::AttnVBias, KV, H, i)});
    }
    L.o = fetch_linear(R::AttnOut, R::AttnOutBias, H, Q, i);
    L.sparse = c.layer_is_sparse(i);
    if (!L.sparse) {
      L.mlp = fetch_mlp(R::FfnGate, R::FfnUp, R::FfnDown, c.intermediate_size, i);
    } else {
      L.router = fetch(name_of(R::MoeRouter, i), {c.num_experts, H});
      for (int64_t e = 0; e < c.num_experts; ++e)
        L.experts.push_back(fetch_mlp(R::ExpertGate, R::ExpertUp, R::ExpertDown, c.expert_intermediate_size, i, e));
      if (a.shared_experts != SharedExperts::None)
        L.shared = fetch_mlp(R::SharedGate, R::SharedUp, R::SharedDown, c.shared_intermediate_size, i);
      if (a.shared_experts == SharedExperts::SigmoidGated) L.shared_gate = fetch(name_of(R::SharedExpertGate, i), {1, H});
    }
    layers_.push_back(std::move(L));
  }
  inv_freq_ = rope_inverse_frequencies(c).to(options_.device);
  if (c.rope.sliding_theta) inv_freq_sliding_ = rope_inverse_frequencies(c, *c.rope.sliding_theta).to(options_.device);
  index_linear_slots();
}

void Transformer::index_linear_slots() {
  using R = TensorRole;
  const ModelConfig& c = config_;
  const Architecture& a = *c.arch;
  const int64_t H = c.hidden_size, Q = c.num_heads * c.head_dim, KV = c.num_kv_heads * c.head_dim;
  for (int64_t i = 0; i < c.num_layers; ++i) {
    LayerWeights& L = layers_[i];
    // A LoRA target by its Hugging Face name: rows [offset, offset + rows) of a fused layer.
    auto add = [&](R role, LinearWeights& w, int64_t offset, int64_t rows, int64_t expert = -1) {
      if (!a.has(role)) return;
      const std::string name = expand_name(a.hf_template(role), i, expert);
      slots_.push_back({name, LinearSlot{&w, offset, rows}});
      fed_by_[&w].push_back(name);
    };
    add(R::AttnQ, L.qkv, 0, Q);
    add(R::AttnK, L.qkv, Q, KV);
    add(R::AttnV, L.qkv, Q + KV, KV);
    add(R::AttnQkv, L.qkv, 0, Q + 2 * KV);
    add(R::AttnOut, L.o, 0, H);
    auto add_mlp = [&](R gate, R up, R down, ExpertWeights& m, int64_t expert) {
      const int64_t F = m.down.in_features();
      if (a.gated_ffn) {
        add(gate, m.gate_up, 0, F, expert);
        add(up, m.gate_up, F, F, expert);
      } else {
        add(up, m.gate_up, 0, F, expert);
      }
      add(down, m.down, 0, H, expert);
    };
    if (!L.sparse) {
      add_mlp(R::FfnGate, R::FfnUp, R::FfnDown, L.mlp, -1);
      add(R::FfnGateUp, L.mlp.gate_up, 0, L.mlp.gate_up.out_features());
      continue;
    }
    for (int64_t e = 0; e < c.num_experts; ++e) add_mlp(R::ExpertGate, R::ExpertUp, R::ExpertDown, L.experts[e], e);
    if (L.shared.down.defined()) add_mlp(R::SharedGate, R::SharedUp, R::SharedDown, L.shared, -1);
  }
}

std::vector<std::string> Transformer::adaptable_weights() const {
  std::vector<std::string> names;
  for (const auto& [name, _] : slots_) names.push_back(name);
  return names;
}

std::vector<int64_t> Transformer::adaptable_shape(const std::string& weight_name) const {
  for (const auto& [name, slot] : slots_)
    if (name == weight_name) return {slot.rows, slot.linear->in_features()};
  fail("lora", "'" + weight_name + "' is not a linear layer of this model");
}

void Transformer::attach_lora(const std::string& weight_name, const at::Tensor& A, const at::Tensor& B, double scale,
                              double dropout) {
  for (auto& [name, slot] : slots_) {
    if (name != weight_name) continue;
    const int64_t in = slot.linear->in_features();
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
  at::Tensor y = w.stored ? stored_linear(w.stored, x) : dense_project(x, w.weight, w.bias);
  if (w.stored && w.bias.defined()) y = y + w.bias;
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

namespace {

// A 2-D float tensor of a safetensors checkpoint as a matrix read in place (the checkpoint kept
// open by it), or nullptr for another dtype or rank.
WeightMatrixPtr in_place_matrix(const std::shared_ptr<const io::Checkpoint>& ckpt, const io::TensorView& view) {
  const int type = ggml_type_of_dtype(view.spec.dtype);
  if (type < 0 || view.spec.shape.size() != 2) return nullptr;
  return stored_rows(static_cast<uint32_t>(type), view.bytes.data(), view.spec.shape[0], view.spec.shape[1], ckpt);
}

// Both from_checkpoint()s: an adapter's updates merged into the weights they change (in fp32);
// with `shared`, every other matrix read in place.
std::unique_ptr<Transformer> checkpoint_model(const ModelConfig& config, const io::Checkpoint& ckpt,
                                              const std::shared_ptr<const io::Checkpoint>& shared,
                                              const LoadOptions& options, const LoraAdapter* adapter) {
  if (adapter) adapter->check_fits(config, ckpt);
  auto get = [&](const std::string& name) {
    if (adapter)
      if (at::Tensor d = adapter->delta(name); d.defined())
        return (load_tensor(ckpt.get(name), at::kFloat) + d).to(options.device, options.compute_dtype).contiguous();
    return load_tensor(ckpt.get(name), options.compute_dtype, options.device);
  };
  auto has = [&](const std::string& name) { return ckpt.contains(name); };
  if (!shared) return std::make_unique<Transformer>(config, get, has, options);
  std::set<std::string> adapted;  // a merged update needs a private copy
  if (adapter)
    for (const auto& w : adapter->adapted_weights()) adapted.insert(w);
  auto stored = [&](const std::string& name) -> WeightMatrixPtr {
    return adapted.count(name) ? nullptr : in_place_matrix(shared, ckpt.get(name));
  };
  return std::make_unique<Transformer>(config, get, has, options, stored);
}

}  // namespace

std::unique_ptr<Transformer> Transformer::from_checkpoint(const ModelConfig& config, const io::Checkpoint& ckpt,
                                                          const LoadOptions& options, const LoraAdapter* adapter) {
  return checkpoint_model(config, ckpt, nullptr, options, adapter);
}

std::unique_ptr<Transformer> Transformer::from_checkpoint(const ModelConfig& config,
                                                          std::shared_ptr<const io::Checkpoint> ckpt,
                                                          const LoadOptions& options, const LoraAdapter* adapter) {
  return checkpoint_model(config, *ckpt, ckpt, options, adapter);
}

std::unique_ptr<Transformer> Transformer::load(const std::filesystem::path& dir, const LoadOptions& options,
                                               const LoraAdapter* adapter) {
  ModelConfig config = ModelConfig::load(dir);
  auto shared_ckpt = std::make_shared<const io::Checkpoint>(dir);
  const io::Checkpoint& ckpt = *shared_ckpt;
  auto quantized = quant::detect_int_checkpoint(dir);
  if (!quantized) {
    check_checkpoint_shapes(config, ckpt, (dir / "config.json").string());
    return from_checkpoint(config, shared_ckpt, options, adapter);
  }
  // INT4/INT8 safetensors (compressed-tensors, GPTQ): dequantized as they load.
  if (adapter) fail(dir.string(), "applying an adapter to an integer-quantized model is not supported");
  auto get = [&](const std::string& name) {
    if (quant::has_int_weight(ckpt, name, *quantized))
      return quant::load_int_weight(ckpt, name, *quantized).to(options.device, options.compute_dtype).contiguous();
    return load_tensor(ckpt.get(name), options.compute_dtype, options.device);
  };
  auto has = [&](const std::string& name) { return ckpt.contains(name) || quant::has_int_weight(ckpt, name, *quantized); };
  // Integer weights as levels and scales; float tensors (norms, embeddings) in place.
  auto stored = [&](const std::string& name) -> WeightMatrixPtr {
    if (quant::has_int_weight(ckpt, name, *quantized))
      return quant::int_matrix(quant::load_int_levels(ckpt, name, *quantized), quantized->bits);
    return in_place_matrix(shared_ckpt, ckpt.get(name));
  };
  return std::make_unique<Transformer>(config, get, has, options, stored);
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

at::Tensor Transformer::norm(const at::Tensor& x, const NormWeights& w) const {
  if (config_.arch->norm == NormKind::LayerNorm)
    return at::layer_norm(x, {x.size(-1)}, w.scale, w.bias, config_.rms_norm_eps);
  // Half types normalize in fp32 (as transformers does); fp32/fp64 stay as they are.
  auto xf = (x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf) ? x.to(at::kFloat) : x;
  auto normed = xf * at::rsqrt(xf.pow(2).mean({-1}, /*keepdim=*/true) + config_.rms_norm_eps);
  // Llama multiplies in the model's dtype, Gemma in fp32 before casting back.
  if (config_.arch->norm == NormKind::RmsPlusOne) return (normed * w.scale).to(x.scalar_type());
  return w.scale * normed.to(x.scalar_type());
}

at::Tensor Transformer::rotate(const at::Tensor& x, const at::Tensor& inv_freq, int64_t start) const {
  const int64_t T = x.size(2), R = config_.rotary_dim;
  auto positions = at::arange(start, start + T, at::TensorOptions().dtype(at::kFloat).device(options_.device));
  auto freqs = at::outer(positions, inv_freq);
  auto emb = at::cat({freqs, freqs}, -1);
  auto cos = emb.cos().to(x.scalar_type()), sin = emb.sin().to(x.scalar_type());
  if (R == x.size(-1)) return apply_rope(x, cos, sin);
  // Partial rotary (Phi-2): the first R dimensions turn, the rest pass through.
  return at::cat({apply_rope(x.narrow(-1, 0, R), cos, sin), x.narrow(-1, R, x.size(-1) - R)}, -1);
}

at::Tensor Transformer::attention(const at::Tensor& x, const LayerWeights& w, size_t layer, int64_t start,
                                  KVCache* cache) const {
  const ModelConfig& c = config_;
  const int64_t B = x.size(0), T = x.size(1), D = c.head_dim, NH = c.num_heads, NKV = c.num_kv_heads;
  const int64_t G = NH / NKV;
  auto qkv = project(x, w.qkv);
  auto q = qkv.narrow(-1, 0, NH * D).view({B, T, NH, D});
  auto k = qkv.narrow(-1, NH * D, NKV * D).view({B, T, NKV, D});
  auto v = qkv.narrow(-1, (NH + NKV) * D, NKV * D).view({B, T, NKV, D}).transpose(1, 2);
  if (w.q_norm.defined()) {
    q = norm(q, w.q_norm);
    k = norm(k, w.k_norm);
  }
  const bool sliding = c.layer_is_sliding(static_cast<int64_t>(layer));
  const at::Tensor& inv_freq = sliding && inv_freq_sliding_.defined() ? inv_freq_sliding_ : inv_freq_;
  q = rotate(q.transpose(1, 2), inv_freq, start);
  k = rotate(k.transpose(1, 2), inv_freq, start);

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
  const bool windowed = sliding && *c.sliding_window < S;
  if (T > 1 || windowed) {
    auto qpos = at::arange(start, S, at::TensorOptions().dtype(at::kLong).device(options_.device)).unsqueeze(1);
    auto kpos = at::arange(0, S, at::TensorOptions().dtype(at::kLong).device(options_.device)).unsqueeze(0);
    auto blocked = kpos > qpos;
    if (windowed) blocked = blocked.logical_or(kpos <= qpos - *c.sliding_window);
    mask = at::zeros({T, S}, x.options()).masked_fill(blocked, -std::numeric_limits<float>::infinity());
  }
  const double scale_base = c.query_pre_attn_scalar > 0 ? c.query_pre_attn_scalar : static_cast<double>(D);
  const bool plain = c.attn_logit_softcap == 0 && scale_base == static_cast<double>(D);
  at::Tensor out;
#if TORCH_VERSION_MAJOR >= 2
  if (plain) {
    // Grouped-query attention as plain attention over repeated key/value heads.
    auto kr = G > 1 ? k.repeat_interleave(G, 1) : k;
    auto vr = G > 1 ? v.repeat_interleave(G, 1) : v;
    if (mask.defined() && !windowed && start == 0)
      out = at::scaled_dot_product_attention(q, kr, vr, {}, 0.0, /*is_causal=*/true);
    else
      out = at::scaled_dot_product_attention(q, kr, vr, mask.defined() ? c10::optional<at::Tensor>(mask) : c10::nullopt);
  }
#endif
  if (!out.defined()) {
    // Grouped-query attention without copying keys: the G query heads sharing a key/value head
    // are stacked along the sequence axis, so one batched GEMM serves the whole group.
    auto qg = q.reshape({B, NKV, G * T, D});
    auto scores = at::matmul(qg, k.transpose(-1, -2)).mul_(1.0 / std::sqrt(scale_base));  // [B, NKV, G*T, S]
    if (c.attn_logit_softcap > 0) scores = at::tanh(scores / c.attn_logit_softcap) * c.attn_logit_softcap;
    if (mask.defined()) scores.view({B, NKV, G, T, S}).add_(mask);
    // Half types: softmax in fp32, as transformers' eager attention computes it.
    const bool half = scores.scalar_type() == at::kBFloat16 || scores.scalar_type() == at::kHalf;
    auto probs = half ? at::softmax(scores, -1, at::kFloat).to(scores.scalar_type()) : at::softmax(scores, -1);
    out = at::matmul(probs, v).view({B, NH, T, D});
  }
  (void)plain;
  out = out.transpose(1, 2).reshape({B, T, NH * D});
  return project(out, w.o);
}

at::Tensor Transformer::mlp(const at::Tensor& x, const ExpertWeights& w) const {
  auto gu = project(x, w.gate_up);
  const int64_t F = w.down.in_features();
  auto act = [&](const at::Tensor& t) {
    switch (config_.activation) {
      case Activation::Silu: return at::silu(t);
      case Activation::GeluTanh: return at::gelu(t, "tanh");
      case Activation::Gelu: return at::gelu(t);
    }
    return t;
  };
  auto h = config_.arch->gated_ffn ? act(gu.narrow(-1, 0, F)) * gu.narrow(-1, F, F) : act(gu);
  return project(h, w.down);
}

at::Tensor Transformer::ffn(const at::Tensor& x, const LayerWeights& w) const {
  return w.sparse ? moe(x, w) : mlp(x, w.mlp);
}

at::Tensor Transformer::moe(const at::Tensor& x, const LayerWeights& w) const {
  const int64_t H = config_.hidden_size, K = config_.num_experts_per_tok;
  auto flat = x.reshape({-1, H});
  auto router_logits = dense_project(flat, w.router);
  // Routing weights in at least fp32, as transformers computes them (fp64 stays fp64).
  auto probs = at::softmax(router_logits.scalar_type() == at::kDouble ? router_logits : router_logits.to(at::kFloat), -1);
  auto [top_w, top_i] = at::topk(probs, K, -1);
  if (config_.renormalize_top_k) top_w = top_w / top_w.sum(-1, true);
  top_w = top_w.to(x.scalar_type());
  auto out = at::zeros_like(flat);
  for (int64_t e = 0; e < static_cast<int64_t>(w.experts.size()); ++e) {
    auto hits = (top_i == e).nonzero();  // [n, 2]: token, slot
    if (hits.size(0) == 0) continue;
    auto tokens = hits.select(1, 0), slots = hits.select(1, 1);
    auto ye = mlp(flat.index_select(0, tokens), w.experts[e]) * top_w.index({tokens, slots}).unsqueeze(1);
    out.index_add_(0, tokens, ye);
  }
  if (w.shared.down.defined()) {
    auto shared = mlp(flat, w.shared);
    if (w.shared_gate.defined()) shared = shared * at::sigmoid(dense_project(flat, w.shared_gate));
    out = out + shared;
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
  auto h = embed_stored_ ? stored_embedding(*embed_stored_, ids) : at::embedding(embed_, ids.to(options_.device));
  if (training_ && embedding_noise_ > 0) h = neftune_noise(h, embedding_noise_);
  if (config_.arch->embeddings_times_sqrt_hidden)  // Gemma: the factor rounded to the model's dtype first
    h = h * at::scalar_tensor(std::sqrt(static_cast<double>(config_.hidden_size)), h.options());
  else if (config_.embedding_scale != 1)
    h = h * config_.embedding_scale;
  const bool recompute = checkpoint_layers_ && !cache && at::GradMode::is_enabled();
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (!recompute) {
      h = layer_forward(h, i, start, cache);
      continue;
    }
    std::vector<at::Tensor> trainable;
    for (const LinearWeights* lin : layers_[i].linears())
      for (const auto& s : lin->lora) trainable.insert(trainable.end(), {s.A, s.B});
    h = checkpointed_call([this, i](const at::Tensor& x) { return layer_forward(x, i, 0, nullptr); }, h, trainable);
  }
  if (cache) cache->length = start + ids.size(1);
  return norm(h, final_norm_);
}

at::Tensor Transformer::layer_forward(const at::Tensor& h, size_t i, int64_t start, KVCache* cache) const {
  const auto& L = layers_[i];
  const double rs = config_.residual_scale;
  if (config_.arch->parallel_attention_ffn) {  // Phi-2
    auto n = norm(h, L.attn_norm);
    return h + attention(n, L, i, start, cache) + ffn(n, L);
  }
  auto a = attention(norm(h, L.attn_norm), L, i, start, cache);
  if (L.attn_post_norm.defined()) a = norm(a, L.attn_post_norm);
  auto x = rs == 1 ? h + a : h + a * rs;
  auto m = ffn(norm(x, L.ffn_norm), L);
  if (L.ffn_post_norm.defined()) m = norm(m, L.ffn_post_norm);
  return rs == 1 ? x + m : x + m * rs;
}

at::Tensor Transformer::lm_head(const at::Tensor& hidden) const { return lm_head(hidden, 0, config_.vocab_size); }

at::Tensor Transformer::lm_head(const at::Tensor& hidden_in, int64_t first, int64_t count) const {
  if (first < 0 || count <= 0 || first + count > config_.vocab_size) fail("lm_head", "vocabulary slice out of range");
  const bool whole = first == 0 && count == config_.vocab_size;
  const at::Tensor hidden = config_.logit_scale != 1 ? hidden_in / config_.logit_scale : hidden_in;  // MiniCPM
  if (observer_ && first == 0) observer_({expand_name(config_.arch->hf_template(TensorRole::Output), -1)}, hidden);
  const at::Tensor bias = lm_head_.bias.defined() && !whole ? lm_head_.bias.narrow(0, first, count) : lm_head_.bias;
  at::Tensor logits =
      lm_head_.stored ? stored_linear(row_slice(lm_head_.stored, first, count), hidden)
                      : dense_project(hidden, whole ? lm_head_.weight : lm_head_.weight.narrow(0, first, count), bias);
  if (lm_head_.stored && bias.defined()) logits = logits + bias;
  if (config_.final_logit_softcap > 0)
    logits = at::tanh(logits / config_.final_logit_softcap) * config_.final_logit_softcap;
  return logits.scalar_type() == at::kDouble ? logits : logits.to(at::kFloat);  // fp64 for gradient checks
}

at::Tensor Transformer::forward(const at::Tensor& ids, KVCache* cache) const {
  return lm_head(hidden_states(ids, cache));
}

std::vector<WeightFormatCount> Transformer::weight_formats() const {
  std::vector<WeightFormatCount> out;
  auto count = [&](const WeightMatrixPtr& m, const at::Tensor& dense) {
    if (!m && !dense.defined()) return;
    const std::string format = m ? m->format() : "F32 (expanded)";
    auto it = std::find_if(out.begin(), out.end(), [&](const WeightFormatCount& f) { return f.format == format; });
    if (it == out.end()) it = out.insert(out.end(), {format, 0, 0});
    it->matrices += 1;
    it->bytes += m ? m->stored_bytes() : static_cast<uint64_t>(dense.numel() * dense.element_size());
  };
  count(embed_stored_, embed_);
  if (!config_.tie_word_embeddings) count(lm_head_.stored, lm_head_.weight);
  for (const auto& L : layers_)
    for (const LinearWeights* w : L.linears()) count(w->stored, w->weight);
  return out;
}

int64_t Transformer::parameter_count() const {
  auto lin = [](const LinearWeights& w) {
    return w.out_features() * w.in_features() + (w.bias.defined() ? w.bias.numel() : 0);
  };
  auto nrm = [](const NormWeights& n) { return (n.scale.defined() ? n.scale.numel() : 0) + (n.bias.defined() ? n.bias.numel() : 0); };
  const int64_t vocab_by_hidden = config_.vocab_size * config_.hidden_size;
  int64_t n = vocab_by_hidden + nrm(final_norm_) + (config_.tie_word_embeddings ? 0 : vocab_by_hidden) +
              (lm_head_.bias.defined() ? lm_head_.bias.numel() : 0);
  for (const auto& L : layers_) {
    for (const NormWeights* w : {&L.attn_norm, &L.attn_post_norm, &L.ffn_norm, &L.ffn_post_norm, &L.q_norm, &L.k_norm})
      n += nrm(*w);
    for (const LinearWeights* w : L.linears()) n += lin(*w);
    if (L.router.defined()) n += L.router.numel();
    if (L.shared_gate.defined()) n += L.shared_gate.numel();
  }
  return n;
}

}  // namespace anvil::model
