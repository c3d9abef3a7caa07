// MiniCPM (remote code): Llama's block with scaled embeddings (scale_emb), residual branches
// times scale_depth / sqrt(layers), and logits of h / (hidden / dim_model_base).
#include <cmath>

#include <nlohmann/json.hpp>

#include "model/architecture.h"
#include "model/config.h"
#include "model/gguf_hparams.h"
#include "util/json_reader.h"

namespace anvil::model {
namespace {

void read_config(const util::JsonFields& f, ModelConfig& c) {
  c.embedding_scale = f.number_or("scale_emb", 1.0, 1e-12, 1e12);
  c.residual_scale = f.number_or("scale_depth", 1.0, 1e-12, 1e12) / std::sqrt(static_cast<double>(c.num_layers));
  c.logit_scale = static_cast<double>(c.hidden_size) / f.number_or("dim_model_base", static_cast<double>(c.hidden_size), 1e-12, 1e12);
}

void write_config(const ModelConfig& c, nlohmann::ordered_json& j) {
  j["scale_emb"] = c.embedding_scale;
  j["scale_depth"] = c.residual_scale * std::sqrt(static_cast<double>(c.num_layers));
  j["dim_model_base"] = static_cast<double>(c.hidden_size) / c.logit_scale;
}

}  // namespace

const Architecture& minicpm_family() {
  static constexpr HParam keys[] = {HParam::RopeScalingLinear, HParam::RopeFreqBase, HParam::RmsEpsilon, HParam::EmbeddingScale,
                                    HParam::ResidualScale, HParam::LogitScale};
  static const RoleNames names = llama_hf_names();
  static const Architecture a{
      .model_type = "minicpm",
      .hf_class = "MiniCPMForCausalLM",
      .gguf_arch = "minicpm",
      .tie_word_embeddings = true,
      .hf_names = &names,
      .gguf_permute_qk = true,
      .gguf_keys = keys,
      .read_config = read_config,
      .write_config = write_config,
  };
  return a;
}

}  // namespace anvil::model
