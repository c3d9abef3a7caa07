#pragma once
// What Gemma 1, 2 and 3 read alike from config.json.
#include <nlohmann/json.hpp>

#include <cmath>
#include <string>

#include "model/config.h"
#include "util/json_reader.h"

namespace anvil::model {

Activation parse_activation(const std::string& name, const util::JsonFields& f, const char* key);  // config.cpp

inline void read_gemma_common(const util::JsonFields& f, ModelConfig& c) {
  // transformers' Gemma uses hidden_activation and, when it is null, the tanh approximation
  // whatever "hidden_act" says (early Gemma configs say "gelu").
  c.activation = f.has("hidden_activation")
                     ? parse_activation(f.string_or("hidden_activation", ""), f, "hidden_activation")
                     : Activation::GeluTanh;
  c.query_pre_attn_scalar = static_cast<double>(f.integer_or("query_pre_attn_scalar", c.head_dim, 1, kMaxWidth));
  c.attn_logit_softcap = f.number_or("attn_logit_softcapping", 0, 0, 1e30);
  c.final_logit_softcap = f.number_or("final_logit_softcapping", 0, 0, 1e30);
}

const char* activation_name(Activation a);  // config.cpp

inline void write_gemma_common(const ModelConfig& c, nlohmann::ordered_json& j) {
  j["hidden_activation"] = activation_name(c.activation);
  // transformers' config validation wants an integer here.
  if (c.query_pre_attn_scalar > 0) j["query_pre_attn_scalar"] = static_cast<int64_t>(std::llround(c.query_pre_attn_scalar));
  auto cap = [](double v) { return v > 0 ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr); };
  j["attn_logit_softcapping"] = cap(c.attn_logit_softcap);
  j["final_logit_softcapping"] = cap(c.final_logit_softcap);
}

// llama.cpp scales Gemma 2/3 queries by head_dim^-1/2 except for the 27B models, which it knows
// by their layer count (46, 62) and scales by (hidden / heads)^-1/2, their query_pre_attn_scalar.
inline void gemma_gguf_query_scale(ModelConfig& c, int64_t layers_of_27b) {
  c.query_pre_attn_scalar = c.num_layers == layers_of_27b ? static_cast<double>(c.hidden_size / c.num_heads)
                                                          : static_cast<double>(c.head_dim);
}

// Every `period`-th layer (1-based) attends fully, the others through the window.
inline void periodic_sliding_layers(ModelConfig& c, int64_t period) {
  c.sliding_layers.assign(static_cast<size_t>(c.num_layers), true);
  for (int64_t i = 0; i < c.num_layers; ++i) c.sliding_layers[static_cast<size_t>(i)] = (i + 1) % period != 0;
}

}  // namespace anvil::model
