#include "model/lora_adapter.h"

#include <cmath>
#include <optional>
#include <nlohmann/json.hpp>
#include <regex>

#include "io/atomic_file.h"
#include "model/tensor_bridge.h"
#include "util/error.h"

namespace anvil::model {

std::unique_ptr<LoraAdapter> LoraAdapter::load(const std::filesystem::path& dir) {
  auto cfg_path = dir / "adapter_config.json";
  if (!std::filesystem::exists(cfg_path)) fail(cfg_path.string(), "not found (is this a PEFT adapter directory?)");
  nlohmann::json cfg;
  try {
    cfg = nlohmann::json::parse(io::read_text_file(cfg_path));
  } catch (const nlohmann::json::exception& e) {
    fail(cfg_path.string(), std::string("not valid JSON (") + e.what() + ")");
  }
  const std::string where = cfg_path.string();
  if (cfg.value("peft_type", "LORA") != "LORA") fail(where, "peft_type '" + cfg.value("peft_type", "") + "' is not LORA");
  if (cfg.value("use_dora", false)) fail(where, "DoRA adapters are not supported");
  if (cfg.value("fan_in_fan_out", false)) fail(where, "fan_in_fan_out adapters are not supported");
  if (cfg.contains("modules_to_save") && !cfg["modules_to_save"].is_null() && !cfg["modules_to_save"].empty())
    fail(where, "modules_to_save is not supported");
  if (cfg.contains("rank_pattern") && cfg["rank_pattern"].is_object() && !cfg["rank_pattern"].empty())
    fail(where, "rank_pattern is not supported");
  if (cfg.contains("alpha_pattern") && cfg["alpha_pattern"].is_object() && !cfg["alpha_pattern"].empty())
    fail(where, "alpha_pattern is not supported");
  auto a = std::make_unique<LoraAdapter>();
  a->dir_ = dir;
  a->rank_ = cfg.value("r", 0);
  if (a->rank_ <= 0) fail(where, "r must be a positive integer");
  const double alpha = cfg.value("lora_alpha", static_cast<double>(a->rank_));
  a->scale_ = cfg.value("use_rslora", false) ? alpha / std::sqrt(static_cast<double>(a->rank_)) : alpha / a->rank_;
  if (cfg.contains("target_modules") && cfg["target_modules"].is_array())
    for (const auto& t : cfg["target_modules"]) a->targets_.push_back(t.get<std::string>());

  auto file = dir / "adapter_model.safetensors";
  if (!std::filesystem::exists(file)) fail(file.string(), "not found");
  a->weights_ = std::make_unique<io::Checkpoint>(file);
  // base_model.model.<module>.lora_A.weight -> <module>.weight
  static const std::regex name_re(R"(^base_model\.model\.(.+)\.lora_([AB])(?:\.default)?\.weight$)");
  for (const auto& name : a->weights_->names()) {
    std::smatch m;
    if (!std::regex_match(name, m, name_re)) fail(file.string(), "tensor '" + name + "' is not a LoRA A/B weight");
    auto& pair = a->pairs_[m[1].str() + ".weight"];
    (m[2] == "A" ? pair.first : pair.second) = name;
  }
  for (const auto& [weight, pair] : a->pairs_) {
    if (pair.first.empty() || pair.second.empty()) fail(file.string(), "'" + weight + "' lacks its lora_A or lora_B");
    const auto& A = a->weights_->get(pair.first).spec.shape;
    const auto& B = a->weights_->get(pair.second).spec.shape;
    if (A.size() != 2 || B.size() != 2 || A[0] != a->rank_ || B[1] != a->rank_)
      fail(file.string(), "'" + weight + "': lora_A/lora_B shapes do not match r = " + std::to_string(a->rank_));
  }
  return a;
}

std::vector<std::string> LoraAdapter::adapted_weights() const {
  std::vector<std::string> out;
  for (const auto& [w, _] : pairs_) out.push_back(w);
  return out;
}

at::Tensor LoraAdapter::delta(const std::string& weight_name) const {
  auto it = pairs_.find(weight_name);
  if (it == pairs_.end()) return {};
  auto A = load_tensor(weights_->get(it->second.first), at::kFloat);
  auto B = load_tensor(weights_->get(it->second.second), at::kFloat);
  return at::matmul(B, A).mul_(scale_);
}

void write_merged_model(const std::filesystem::path& base_dir, const LoraAdapter& adapter,
                        const std::filesystem::path& out_dir, const std::string& dtype) {
  io::Checkpoint base(base_dir);
  auto config = nlohmann::ordered_json::parse(io::read_text_file(base_dir / "config.json"));
  for (const auto& w : adapter.adapted_weights())
    if (!base.contains(w)) fail(base_dir.string(), "has no '" + w + "', which the adapter changes");
  std::optional<at::ScalarType> out_type;
  if (!dtype.empty()) out_type = parse_float_dtype(dtype);
  std::vector<io::TensorSpec> specs;
  for (const auto& name : base.names()) {
    io::TensorSpec spec = base.get(name).spec;
    if (out_type && io::dtype_is_float(spec.dtype)) spec.dtype = from_scalar_type(*out_type);
    specs.push_back(spec);
  }
  io::AtomicDir out(out_dir);
  io::ShardedWriter writer(out.temp_path(), specs, 5'000'000'000ull);
  for (const auto& spec : specs) {
    const io::TensorView& view = base.get(spec.name);
    at::Tensor t = load_tensor(view, at::kFloat);
    if (at::Tensor d = adapter.delta(spec.name); d.defined()) t.add_(d);
    t = t.to(to_scalar_type(spec.dtype)).contiguous();
    writer.write(spec.name, std::span<const uint8_t>(static_cast<const uint8_t*>(t.data_ptr()), t.nbytes()));
  }
  writer.commit();
  if (out_type) {
    const std::string name = *out_type == at::kBFloat16 ? "bfloat16" : *out_type == at::kHalf ? "float16" : "float32";
    if (config.contains("torch_dtype")) config["torch_dtype"] = name;
    if (config.contains("dtype") || !config.contains("torch_dtype")) config["dtype"] = name;
  }
  io::write_text_file(out.temp_path() / "config.json", config.dump(2) + "\n");
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                        "generation_config.json"})
    if (std::filesystem::exists(base_dir / f)) std::filesystem::copy_file(base_dir / f, out.temp_path() / f);
  out.commit();
}

}  // namespace anvil::model
