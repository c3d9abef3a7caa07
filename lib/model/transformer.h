#pragma once
// The inference kernel: a decoder-only transformer in LibTorch, for every family in
// model/families/ (the block reads the family's row: norms, activation, q/k norms, sandwich or
// parallel blocks, partial rotary, windows, soft-caps, scales, routed and shared experts).
// On CPU in fp32, linear weights and embeddings stay as the file stores them (bf16/f16/f32
// safetensors, GGUF blocks of any type), read in place from the memory map through
// model/weight_matrix.h; elsewhere (CUDA, other compute dtypes, a merged adapter) they are held in
// the compute dtype. q/k/v and gate/up projections are fused at load (stacked in place, or
// concatenated) so each block runs few, large products.
#include <ATen/ATen.h>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/weight_matrix.h"

namespace anvil::io {
class Checkpoint;
}

namespace anvil::model {

struct LoadOptions {
  at::Device device = at::kCPU;
  at::ScalarType compute_dtype = at::kFloat;
  // CPU + fp32: compute from the stored bytes (false: expand every weight to fp32 at load, the
  // behaviour before stored weights; tests compare the two).
  bool keep_stored = true;
};

// Keys and values of every layer for positions [0, length), room for `capacity`.
struct KVCache {
  std::vector<at::Tensor> keys, values;  // per layer [batch, kv_heads, capacity, head_dim]
  int64_t length = 0;
  int64_t capacity = 0;
};

// A trainable low-rank update of some output rows of a (possibly fused) linear layer:
// y[..., offset:offset+rows] += scale * B(A(dropout(x))), as PEFT's LoRA layers compute it.
struct LoraSlice {
  int64_t offset = 0, rows = 0;
  at::Tensor A, B;  // [r, in], [rows, r]
  double scale = 1, dropout = 0;
};

struct LinearWeights {
  at::Tensor weight;      // [out, in] in the compute dtype, or undefined when stored is set
  WeightMatrixPtr stored; // the weight as the file stores it
  at::Tensor bias;        // [out] or undefined
  std::vector<LoraSlice> lora;

  bool defined() const { return weight.defined() || stored; }
  int64_t out_features() const { return stored ? stored->rows() : weight.size(0); }
  int64_t in_features() const { return stored ? stored->cols() : weight.size(1); }
};

// A dense MLP: gate/up fused [2*ffn, hidden] (gated) or up alone [ffn, hidden], then down.
struct ExpertWeights {
  LinearWeights gate_up;
  LinearWeights down;
};

// A norm's scale as the forward pass multiplies by it ((1 + w) already added for Gemma's, in at
// least fp32), and its bias (LayerNorm); undefined when the family has no such norm.
struct NormWeights {
  at::Tensor scale, bias;
  bool defined() const { return scale.defined(); }
};

struct LayerWeights {
  NormWeights attn_norm, attn_post_norm, ffn_norm, ffn_post_norm;
  NormWeights q_norm, k_norm;  // per head, before the rotary embedding
  LinearWeights qkv;      // fused [(heads + 2*kv_heads) * head_dim, hidden]
  LinearWeights o;
  ExpertWeights mlp;      // the dense FFN of a dense layer
  at::Tensor router;      // MoE: [experts, hidden]
  std::vector<ExpertWeights> experts;
  ExpertWeights shared;   // the shared expert(s), when the family has them
  at::Tensor shared_gate; // Qwen2-MoE: [1, hidden]
  bool sparse = false;

  std::vector<const LinearWeights*> linears() const;
};

// A function that maps an HF tensor name to its weight, already in the compute dtype/device.
// Lets adapters (LoRA) or quantized sources supply weights without the kernel knowing.
using WeightProvider = std::function<at::Tensor(const std::string& name)>;
using WeightExists = std::function<bool(const std::string& name)>;
// A weight as the file stores it, or nullptr where the source cannot serve it in place (then the
// provider's dense tensor is used).
using StoredWeightProvider = std::function<WeightMatrixPtr(const std::string& name)>;

// What a loaded model computes from: per storage format, the number of matrices and their bytes.
struct WeightFormatCount {
  std::string format;
  int64_t matrices = 0;
  uint64_t bytes = 0;
};

class Transformer {
 public:
  Transformer(ModelConfig config, const WeightProvider& get, const WeightExists& has, const LoadOptions& options,
              const StoredWeightProvider& stored = {});

  // A model directory (config.json + safetensors).
  static std::unique_ptr<Transformer> load(const std::filesystem::path& dir, const LoadOptions& options = {},
                                           const class LoraAdapter* adapter = nullptr);
  // A checkpoint already open, with its config; an adapter's updates are merged into the weights
  // (in fp32, before any conversion to the compute dtype).
  static std::unique_ptr<Transformer> from_checkpoint(const ModelConfig& config, const io::Checkpoint& ckpt,
                                                      const LoadOptions& options = {},
                                                      const class LoraAdapter* adapter = nullptr);
  // The same with a checkpoint the model may keep open, so weights are read in place.
  static std::unique_ptr<Transformer> from_checkpoint(const ModelConfig& config,
                                                      std::shared_ptr<const io::Checkpoint> ckpt,
                                                      const LoadOptions& options = {},
                                                      const class LoraAdapter* adapter = nullptr);

  // ids: [batch, seq] int64. With a cache, the ids continue the cached sequence and their keys and
  // values are appended. Returns logits [batch, seq, vocab] in fp32 (fp64 when computing in fp64).
  at::Tensor forward(const at::Tensor& ids, KVCache* cache = nullptr) const;
  // The final normalized hidden states [batch, seq, hidden] (before the LM head).
  at::Tensor hidden_states(const at::Tensor& ids, KVCache* cache = nullptr) const;
  at::Tensor lm_head(const at::Tensor& hidden) const;
  // The logits of vocabulary ids [first, first + count) only: scoring over a large vocabulary one
  // slice at a time keeps the logits of a batch out of memory.
  at::Tensor lm_head(const at::Tensor& hidden, int64_t first, int64_t count) const;

  KVCache new_cache(int64_t batch, int64_t capacity) const;
  const ModelConfig& config() const { return config_; }
  const LoadOptions& options() const { return options_; }
  int64_t parameter_count() const;
  // The formats the linear layers and embeddings compute from ("F32" for tensors held expanded).
  std::vector<WeightFormatCount> weight_formats() const;

  // LoRA training. The HF names of the linear weights an adapter may target, in model order
  // (e.g. "model.layers.0.self_attn.q_proj.weight"), and the [out, in] shape of one.
  std::vector<std::string> adaptable_weights() const;
  std::vector<int64_t> adaptable_shape(const std::string& weight_name) const;
  // Adds scale * B @ A (applied unmerged, so A and B receive gradients) to a weight's outputs.
  void attach_lora(const std::string& weight_name, const at::Tensor& A, const at::Tensor& B, double scale,
                   double dropout);
  // Training mode turns LoRA dropout on.
  void set_training(bool on) { training_ = on; }
  // NEFTune: in training mode, uniform noise in +-alpha / sqrt(seq * hidden) on the token
  // embeddings (before Gemma's sqrt(hidden) factor, as transformers' hook on embed_tokens adds it).
  void set_embedding_noise(double alpha) { embedding_noise_ = alpha; }
  // Recompute each layer's activations during the backward pass instead of storing them.
  void set_gradient_checkpointing(bool on) { checkpoint_layers_ = on; }

  // Calibration: sees every linear layer's input, with the HF names of the weights it feeds
  // (q, k and v share one input). An empty function turns it off.
  using InputObserver = std::function<void(const std::vector<std::string>& weights, const at::Tensor& input)>;
  void set_input_observer(InputObserver observer) { observer_ = std::move(observer); }

 private:
  struct LinearSlot {
    LinearWeights* linear;
    int64_t offset, rows;
  };
  at::Tensor project(const at::Tensor& x, const LinearWeights& w) const;
  at::Tensor layer_forward(const at::Tensor& h, size_t layer, int64_t start, KVCache* cache) const;
  void index_linear_slots();

  at::Tensor attention(const at::Tensor& x, const LayerWeights& w, size_t layer, int64_t start,
                       KVCache* cache) const;
  at::Tensor mlp(const at::Tensor& x, const ExpertWeights& w) const;
  at::Tensor ffn(const at::Tensor& x, const LayerWeights& w) const;
  at::Tensor moe(const at::Tensor& x, const LayerWeights& w) const;
  at::Tensor norm(const at::Tensor& x, const NormWeights& w) const;
  at::Tensor rotate(const at::Tensor& x, const at::Tensor& inv_freq, int64_t start) const;

  ModelConfig config_;
  LoadOptions options_;
  at::Tensor embed_;
  WeightMatrixPtr embed_stored_;  // the embedding as stored (embed_ undefined then)
  NormWeights final_norm_;
  LinearWeights lm_head_;
  std::vector<LayerWeights> layers_;
  at::Tensor inv_freq_;          // [rotary_dim / 2], fp32
  at::Tensor inv_freq_sliding_;  // the windowed layers' own base (Gemma 3), or undefined
  std::vector<std::pair<std::string, LinearSlot>> slots_;
  std::map<const LinearWeights*, std::vector<std::string>> fed_by_;
  InputObserver observer_;
  bool training_ = false;
  double embedding_noise_ = 0;
  bool checkpoint_layers_ = false;
};

// Rotary inverse frequencies exactly as transformers computes them (fp32), including the llama3
// scaling rule; rounded through bf16 when the checkpoint is bf16 (see ../shared/README.md).
// `theta` overrides the config's base (a windowed layer's own base); 0 = the config's.
at::Tensor rope_inverse_frequencies(const ModelConfig& config, double theta = 0);

}  // namespace anvil::model
