#include "merge/moe_merge.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <map>

#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/mapped_file.h"
#include "model/architecture.h"
#include "model/config.h"
#include "model/tensor_bridge.h"
#include "model/tensor_role.h"
#include "model/tensor_shapes.h"
#include "model/transformer.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/json_reader.h"
#include "util/yaml_reader.h"

namespace anvil::merge {
namespace fs = std::filesystem;
namespace {

// The dense MLP of one layer, by role, and the Mixtral name each becomes in expert e.
constexpr std::pair<model::TensorRole, const char*> kExpertParts[] = {
    {model::TensorRole::FfnGate, "w1"}, {model::TensorRole::FfnDown, "w2"}, {model::TensorRole::FfnUp, "w3"}};

std::string hf_name(const model::ModelConfig& c, model::TensorRole role, int64_t layer) {
  return model::expand_name(c.arch->hf_template(role), layer);
}

// The output's name for layer l's router (expert < 0) or expert e's `part` (Mixtral's w1/w2/w3).
std::string moe_name(int64_t layer, int64_t expert, const char* part) {
  return "model.layers." + std::to_string(layer) + ".block_sparse_moe." +
         (expert < 0 ? std::string("gate") : "experts." + std::to_string(expert) + "." + part) + ".weight";
}

// Qwen2-MoE's names: mlp.gate, mlp.experts.E.{gate,down,up}_proj (kShared: mlp.shared_expert.*),
// mlp.shared_expert_gate.
constexpr int64_t kShared = -2, kSharedGate = -3;
std::string qwen_moe_name(int64_t layer, int64_t expert, const char* part) {
  static const std::map<std::string, std::string> proj{{"w1", "gate_proj"}, {"w2", "down_proj"}, {"w3", "up_proj"}};
  const std::string mlp = "model.layers." + std::to_string(layer) + ".mlp.";
  if (expert == -1) return mlp + "gate.weight";
  if (expert == kSharedGate) return mlp + "shared_expert_gate.weight";
  if (expert == kShared) return mlp + "shared_expert." + proj.at(part) + ".weight";
  return mlp + "experts." + std::to_string(expert) + "." + proj.at(part) + ".weight";
}

std::vector<std::string> prompts(const util::YamlReader& r, const YAML::Node& n, const std::string& key) {
  std::vector<std::string> out;
  if (!n || n.IsNull()) return out;
  if (!n.IsSequence()) r.error(n, key + " must be a list of strings");
  for (const auto& p : n) {
    if (!p.IsScalar()) r.error(p, key + " must be a list of strings");
    out.push_back(p.Scalar());
  }
  return out;
}

// Per layer, the mean router input over all tokens of the prompts: [layers, hidden] in fp64.
at::Tensor mean_router_inputs(model::Transformer& m, const tokenizer::Tokenizer& tok, const std::vector<std::string>& texts) {
  const auto& c = m.config();
  at::Tensor sums = at::zeros({c.num_layers, c.hidden_size}, at::kDouble);
  std::map<std::string, int64_t> layer_of;  // the gate_proj weight name -> its layer
  for (int64_t l = 0; l < c.num_layers; ++l) layer_of[hf_name(c, model::TensorRole::FfnGate, l)] = l;
  int64_t tokens = 0;
  m.set_input_observer([&](const std::vector<std::string>& weights, const at::Tensor& input) {
    for (const auto& w : weights)
      if (auto it = layer_of.find(w); it != layer_of.end()) {
        sums[it->second] += input.reshape({-1, c.hidden_size}).to(at::kDouble).sum(0).cpu();
        return;
      }
  });
  for (const auto& text : texts) {
    auto ids = tok.encode(text, /*add_special_tokens=*/true);
    if (ids.empty()) continue;
    std::vector<int64_t> ids64(ids.begin(), ids.end());
    m.hidden_states(at::tensor(ids64, at::kLong).unsqueeze(0));
    tokens += static_cast<int64_t>(ids.size());
  }
  m.set_input_observer({});
  return tokens > 0 ? sums / static_cast<double>(tokens) : sums;
}

at::Tensor summed_embeddings(const at::Tensor& embed, const tokenizer::Tokenizer& tok, const std::vector<std::string>& texts) {
  at::Tensor sum = at::zeros({embed.size(1)}, at::kDouble);
  for (const auto& text : texts)
    for (int32_t id : tok.encode(text, true))
      if (id >= 0 && id < embed.size(0)) sum += embed[id].to(at::kDouble);
  return sum;
}

// Router weights: [layers, experts, hidden] fp32; with a shared expert, its gate row last.
at::Tensor router_weights(const MoeConfig& cfg, const model::ModelConfig& base, const MoeOptions& o) {
  std::vector<MoeExpert> gated = cfg.experts;
  if (cfg.shared_expert) gated.push_back(*cfg.shared_expert);
  const int64_t L = base.num_layers, E = static_cast<int64_t>(gated.size()), H = base.hidden_size;
  if (cfg.gate_mode == "random" || cfg.gate_mode == "uniform_random") {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
    if (cfg.gate_mode == "random") return at::randn({L, E, H}, gen, at::TensorOptions().dtype(at::kFloat));
    const double bound = std::sqrt(1.0 / static_cast<double>(H));
    return at::empty({L, E, H}, at::kFloat).uniform_(-bound, bound, gen);
  }
  auto tok = tokenizer::Tokenizer::load(cfg.base_model);
  std::vector<at::Tensor> rows;  // per expert [layers, hidden]
  if (cfg.gate_mode == "cheap_embed") {
    io::Checkpoint ckpt(cfg.base_model);
    const at::Tensor embed = model::load_tensor(ckpt.get(std::string(base.arch->hf_template(model::TensorRole::TokenEmbedding))), at::kFloat);
    for (size_t e = 0; e < gated.size(); ++e) {
      auto v = summed_embeddings(embed, tok, gated[e].positive_prompts) -
               summed_embeddings(embed, tok, gated[e].negative_prompts);
      rows.push_back(v.unsqueeze(0).expand({L, H}));
      if (o.progress) o.progress("router", static_cast<int64_t>(e) + 1, E);
    }
  } else {
    auto m = model::Transformer::load(cfg.base_model);
    for (size_t e = 0; e < gated.size(); ++e) {
      at::Tensor v = mean_router_inputs(*m, tok, gated[e].positive_prompts);
      if (!gated[e].negative_prompts.empty()) v = v - mean_router_inputs(*m, tok, gated[e].negative_prompts);
      rows.push_back(v);
      if (o.progress) o.progress("router", static_cast<int64_t>(e) + 1, E);
    }
  }
  auto w = at::stack(rows, 1);  // [layers, experts, hidden]
  return (w / w.norm(2, -1, true).clamp_min(1e-8)).to(at::kFloat);
}

}  // namespace

MoeConfig MoeConfig::load(const fs::path& path) {
  const std::string where = path.string();
  util::YamlReader r(path);
  const YAML::Node root = util::load_yaml(io::read_text_file(path), where);
  if (!root.IsMap()) fail(where, "a MoE config must be a mapping (base_model, experts, gate_mode, ...)");
  r.only_keys(root, {"base_model", "experts", "gate_mode", "dtype", "experts_per_token", "shared_experts", "architecture"},
              "a MoE config");
  MoeConfig c;
  c.source = path;
  auto resolve = [&](const YAML::Node& n) {
    if (!n || !n.IsScalar()) r.error(n ? n : root, "a model must be a path");
    fs::path p(n.Scalar());
    if (io::is_directory_quietly(p)) return fs::absolute(p).lexically_normal();
    if (p.is_relative() && io::is_directory_quietly(path.parent_path() / p))
      return fs::absolute(path.parent_path() / p).lexically_normal();
    r.error(n, "model '" + n.Scalar() + "' is not a local directory (looked in the current directory and next to the config)");
  };
  if (!root["base_model"]) fail(where, "missing 'base_model'");
  c.base_model = resolve(root["base_model"]);
  r.choice(root, "gate_mode", c.gate_mode, {"hidden", "cheap_embed", "random", "uniform_random"});
  r.read(root, "experts_per_token", c.experts_per_token, 1, 64);
  if (root["dtype"] && !root["dtype"].IsNull()) {
    std::string d;
    r.choice(root, "dtype", d, {"bfloat16", "float16", "float32", "bf16", "f16", "f32"});
    c.dtype = d;
  }
  bool architecture_given = false;
  if (root["architecture"] && !root["architecture"].IsNull()) {
    r.choice(root, "architecture", c.architecture, {"mixtral", "qwen"});
    architecture_given = true;
  }
  const YAML::Node experts = root["experts"];
  if (!experts || !experts.IsSequence() || experts.size() == 0) fail(where, "'experts' must be a non-empty list");
  auto read_expert = [&](const YAML::Node& e) {
    if (!e.IsMap()) r.error(e, "an expert must be a mapping (source_model, positive_prompts, ...)");
    r.only_keys(e, {"source_model", "positive_prompts", "negative_prompts", "noise_scale", "residual_scale"}, "an expert");
    for (const char* k : {"noise_scale", "residual_scale"})
      if (e[k] && !e[k].IsNull()) r.error(e[k], std::string(k) + " is not supported");
    if (!e["source_model"]) r.error(e, "missing 'source_model'");
    MoeExpert x;
    x.model = resolve(e["source_model"]);
    x.positive_prompts = prompts(r, e["positive_prompts"], "positive_prompts");
    x.negative_prompts = prompts(r, e["negative_prompts"], "negative_prompts");
    return x;
  };
  for (const auto& e : experts) {
    MoeExpert x = read_expert(e);
    if (c.gate_mode != "random" && c.gate_mode != "uniform_random" && x.positive_prompts.empty())
      r.error(e, "an expert needs positive_prompts for gate_mode " + c.gate_mode);
    c.experts.push_back(std::move(x));
  }
  if (const YAML::Node shared = root["shared_experts"]; shared && !shared.IsNull()) {
    if (!shared.IsSequence() || shared.size() != 1)
      r.error(shared, "shared_experts must list exactly one expert (Qwen2-MoE has one shared expert)");
    c.shared_expert = read_expert(shared[0]);
    if (c.gate_mode != "random" && c.gate_mode != "uniform_random" && c.shared_expert->positive_prompts.empty())
      r.error(shared[0], "the shared expert needs positive_prompts for its gate (gate_mode " + c.gate_mode + ")");
    if (!architecture_given) c.architecture = "qwen";
    if (c.architecture != "qwen") r.error(shared, "shared_experts need architecture: qwen (Mixtral has none)");
  } else if (c.architecture == "qwen") {
    r.error(root, "architecture: qwen needs exactly one shared expert (shared_experts), as Qwen2-MoE always adds one");
  }
  if (static_cast<int64_t>(c.experts.size()) < c.experts_per_token)
    fail(where, "experts_per_token " + std::to_string(c.experts_per_token) + " exceeds the " +
                    std::to_string(c.experts.size()) + " experts");
  return c;
}

MoeSummary run_moe(const MoeConfig& cfg, const fs::path& out_dir, const MoeOptions& options) {
  c10::InferenceMode guard;
  const model::ModelConfig base = model::ModelConfig::load(cfg.base_model);
  const std::string base_where = (cfg.base_model / "config.json").string();
  const bool qwen = cfg.architecture == "qwen";
  if (qwen ? base.model_type != "llama" && base.model_type != "mistral" && base.model_type != "qwen2"
           : base.model_type != "llama" && base.model_type != "mistral")
    fail(base_where, "model_type '" + base.model_type + "': anvil moe builds " +
                         (qwen ? "Qwen2-MoE from Llama, Mistral or Qwen2" : "Mixtral from Llama or Mistral") + " models");
  auto out_name = qwen ? qwen_moe_name : moe_name;
  if (qwen && base.head_dim * base.num_heads != base.hidden_size)
    fail(base_where, "head_dim " + std::to_string(base.head_dim) + " is not hidden_size / heads: Qwen2-MoE cannot say it");
  auto base_ckpt = std::make_unique<io::Checkpoint>(cfg.base_model);
  model::check_checkpoint_shapes(base, *base_ckpt, base_where);
  std::vector<std::unique_ptr<io::Checkpoint>> experts;
  std::vector<model::ModelConfig> expert_configs;
  std::vector<MoeExpert> sources = cfg.experts;  // the routed experts, then the shared one
  if (cfg.shared_expert) sources.push_back(*cfg.shared_expert);
  for (const auto& e : sources) {
    expert_configs.push_back(model::ModelConfig::load(e.model));
    experts.push_back(std::make_unique<io::Checkpoint>(e.model));
    const auto& ec = expert_configs.back();
    const std::string where = (e.model / "config.json").string();
    model::check_checkpoint_shapes(ec, *experts.back(), where);
    if (ec.arch != base.arch || ec.num_layers != base.num_layers || ec.hidden_size != base.hidden_size ||
        ec.intermediate_size != base.intermediate_size)
      fail(where, "is not the base model's shape (" + ec.model_type + ", " + std::to_string(ec.num_layers) + " layers, hidden " +
                      std::to_string(ec.hidden_size) + ", ffn " + std::to_string(ec.intermediate_size) + ")");
  }
  const at::ScalarType out_type = cfg.dtype ? model::parse_float_dtype(*cfg.dtype)
                                            : model::to_scalar_type(base_ckpt->get(hf_name(base, model::TensorRole::FfnGate, 0)).spec.dtype);
  const auto config_json = util::parse_ordered_json(base.raw_json, base_where);

  // The plan: every base tensor but the dense MLPs, then per layer the router and the experts.
  struct Planned {
    io::TensorSpec spec;
    const io::Checkpoint* from = nullptr;  // null: the router
    std::string source;
    int64_t layer = -1;
  };
  std::map<std::string, bool> dense_mlp;
  for (int64_t l = 0; l < base.num_layers; ++l)
    for (const auto& [role, part] : kExpertParts) dense_mlp[hf_name(base, role, l)] = true;
  std::vector<Planned> plan;
  const io::DType out_io = model::from_scalar_type(out_type);
  for (const auto& name : base_ckpt->names())
    if (!dense_mlp.count(name)) {
      auto spec = base_ckpt->get(name).spec;
      if (io::dtype_is_float(spec.dtype)) spec.dtype = out_io;
      plan.push_back({spec, base_ckpt.get(), name});
    }
  const int64_t E = static_cast<int64_t>(cfg.experts.size());
  // Qwen2-MoE's attention has q/k/v biases: zeros where the base (Llama, Mistral) has none.
  std::vector<std::pair<io::TensorSpec, int64_t>> zero_biases;
  if (qwen)
    for (int64_t l = 0; l < base.num_layers; ++l)
      for (const auto& [proj, heads] : {std::pair<const char*, int64_t>{"q_proj", base.num_heads}, {"k_proj", base.num_kv_heads},
                                        {"v_proj", base.num_kv_heads}}) {
        const std::string name = "model.layers." + std::to_string(l) + ".self_attn." + proj + ".bias";
        if (!base_ckpt->contains(name)) zero_biases.push_back({{name, out_io, {heads * base.head_dim}}, l});
      }
  for (const auto& [spec, l] : zero_biases) plan.push_back({spec, nullptr, "", -1});
  for (int64_t l = 0; l < base.num_layers; ++l) {
    plan.push_back({{out_name(l, -1, ""), out_io, {E, base.hidden_size}}, nullptr, "", l});
    if (qwen) plan.push_back({{out_name(l, kSharedGate, ""), out_io, {1, base.hidden_size}}, nullptr, "", l});
    for (int64_t e = 0; e < static_cast<int64_t>(experts.size()); ++e)
      for (const auto& [role, part] : kExpertParts) {
        const std::string src = hf_name(base, role, l);
        plan.push_back({{out_name(l, e < E ? e : kShared, part), out_io, experts[e]->get(src).spec.shape}, experts[e].get(), src, l});
      }
  }

  // Routers first (the only step that runs a model; it is freed when they are known), then the
  // writing, tensor by tensor from the mapped files.
  const at::Tensor routers = router_weights(cfg, base, options);

  std::vector<io::TensorSpec> specs;
  for (const auto& p : plan) specs.push_back(p.spec);
  io::AtomicDir out(out_dir);
  io::ShardedWriter writer(out.temp_path(), specs, 5'000'000'000ull);
  MoeSummary summary{base.num_layers, E, static_cast<int64_t>(plan.size()), 0};
  int64_t done = 0;
  for (const auto& p : plan) {
    at::Tensor t;
    if (p.from) t = model::load_tensor(p.from->get(p.source), io::dtype_is_float(p.spec.dtype) ? out_type : model::to_scalar_type(p.spec.dtype));
    else if (p.layer < 0) t = at::zeros(p.spec.shape, at::TensorOptions().dtype(out_type));  // a zero bias
    else if (qwen && p.spec.name == out_name(p.layer, kSharedGate, "")) t = routers[p.layer].narrow(0, E, 1).to(out_type);
    else t = routers[p.layer].narrow(0, 0, E).to(out_type);
    t = t.contiguous();
    writer.write(p.spec.name, std::span<const uint8_t>(static_cast<const uint8_t*>(t.data_ptr()), t.nbytes()));
    summary.bytes_written += t.nbytes();
    // Each input tensor is read once: its pages leave this process (not the page cache) after it.
    if (p.from) io::release_pages(p.from->get(p.source).bytes.data(), p.from->get(p.source).bytes.size());
    if (options.progress) options.progress("write", ++done, static_cast<int64_t>(plan.size()));
  }
  writer.commit();

  nlohmann::ordered_json c = config_json;
  if (qwen) {  // as mergekit-moe's Qwen output writes it
    c["architectures"] = {"Qwen2MoeForCausalLM"};
    c["model_type"] = "qwen2_moe";
    c["num_experts"] = E;
    c["num_experts_per_tok"] = cfg.experts_per_token;
    c["decoder_sparse_step"] = 1;
    c["norm_topk_prob"] = true;
    c["moe_intermediate_size"] = base.intermediate_size;
    c["shared_expert_intermediate_size"] = expert_configs.back().intermediate_size;
    c["mlp_only_layers"] = nlohmann::ordered_json::array();
    c["sliding_window"] = nullptr;
    c["use_sliding_window"] = false;
    c["router_aux_loss_coef"] = 0.001;
    c["output_router_logits"] = false;
    c.erase("head_dim");  // Qwen2-MoE derives it from hidden_size / heads
  } else {
    c["architectures"] = {"MixtralForCausalLM"};
    c["model_type"] = "mixtral";
    c["num_local_experts"] = E;
    c["num_experts_per_tok"] = cfg.experts_per_token;
    c["router_aux_loss_coef"] = 0.001;
    c["router_jitter_noise"] = 0.0;
    c["output_router_logits"] = false;
    if (!c.contains("sliding_window")) c["sliding_window"] = nullptr;
  }
  for (const char* k : {"mlp_bias", "pretraining_tp"}) c.erase(k);  // Llama's keys that Mixtral lacks
  const char* dtype_name = out_type == at::kBFloat16 ? "bfloat16" : out_type == at::kHalf ? "float16" : "float32";
  c[c.contains("torch_dtype") ? "torch_dtype" : "dtype"] = dtype_name;
  io::write_text_file(out.temp_path() / "config.json", c.dump(2) + "\n");
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                        "chat_template.jinja", "generation_config.json"})
    if (fs::exists(cfg.base_model / f)) fs::copy_file(cfg.base_model / f, out.temp_path() / f);
  out.commit();
  return summary;
}

}  // namespace anvil::merge
