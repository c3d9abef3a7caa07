#include "model/lora_adapter.h"

#include <cmath>
#include <optional>
#include <nlohmann/json.hpp>
#include <regex>

#include "io/atomic_file.h"
#include "model/tensor_bridge.h"
#include "model/config.h"
#include "model/tensor_shapes.h"
#include "util/error.h"
#include "util/json_reader.h"

namespace anvil::model {

std::unique_ptr<LoraAdapter> LoraAdapter::load(const std::filesystem::path& dir) {
  auto cfg_path = dir / "adapter_config.json";
  if (!std::filesystem::exists(cfg_path)) fail(cfg_path.string(), "not found (is this a PEFT adapter directory?)");
  auto a = std::make_unique<LoraAdapter>();
  a->dir_ = dir;
  a->config_ = parse_adapter_config(io::read_text_file(cfg_path), cfg_path.string());
  a->rank_ = a->config_.r;
  a->scale_ = a->config_.scale();
  a->targets_ = a->config_.target_modules;

  auto file = dir / "adapter_model.safetensors";
  if (!std::filesystem::exists(file)) fail(file.string(), "not found");
  a->weights_ = std::make_unique<io::Checkpoint>(file);
  // base_model.model.<module>.lora_A.weight -> <module>.weight; an embedding's update is
  // base_model.model.<module>.lora_embedding_A / _B (no .weight), A [r, vocab], B [hidden, r].
  static const std::regex name_re(R"(^base_model\.model\.(.+)\.lora_(embedding_)?([AB])(?:\.default)?(\.weight)?$)");
  for (const auto& name : a->weights_->names()) {
    std::smatch m;
    const bool ok = std::regex_match(name, m, name_re) && m[2].matched != m[4].matched;
    if (!ok) fail(file.string(), "tensor '" + name + "' is not a LoRA A/B weight");
    auto& pair = a->pairs_[m[1].str() + ".weight"];
    if ((pair.a.empty() && pair.b.empty()) || pair.embedding == m[2].matched) pair.embedding = m[2].matched;
    else fail(file.string(), "'" + m[1].str() + "' has both lora_A/B and lora_embedding_A/B weights");
    (m[3] == "A" ? pair.a : pair.b) = name;
  }
  for (const auto& [weight, pair] : a->pairs_) {
    if (pair.a.empty() || pair.b.empty()) fail(file.string(), "'" + weight + "' lacks its lora_A or lora_B");
    const auto& A = a->weights_->get(pair.a).spec.shape;
    const auto& B = a->weights_->get(pair.b).spec.shape;
    const int64_t r = a->config_.rank_of(weight.substr(0, weight.size() - 7));
    if (A.size() != 2 || B.size() != 2 || A[0] != r || B[1] != r)
      fail(file.string(), "'" + weight + "': lora_A/lora_B shapes do not match r = " + std::to_string(r));
  }
  return a;
}

void LoraAdapter::check_fits(const ModelConfig& model, const io::Checkpoint& base) const {
  check_adapter_targets(config_, model, (dir_ / "adapter_config.json").string());
  const std::string where = (dir_ / "adapter_model.safetensors").string();
  for (const auto& w : adapted_weights()) {
    const io::TensorView* t = base.find(w);
    if (!t) fail(where, "changes '" + w + "', which the base model does not have");
    const auto& A = a_shape(w);
    const auto& B = b_shape(w);
    const bool embedding = pairs_.at(w).embedding;  // the update is (B @ A) transposed
    const int64_t rows = embedding ? A[1] : B[0], cols = embedding ? B[0] : A[1];
    if (t->spec.shape.size() != 2 || rows != t->spec.shape[0] || cols != t->spec.shape[1])
      fail(where, "the update for '" + w + "' (" + std::to_string(rows) + " x " + std::to_string(cols) +
                      ") does not match its shape " + shape_string(t->spec.shape));
  }
}

std::vector<std::string> LoraAdapter::adapted_weights() const {
  std::vector<std::string> out;
  for (const auto& [w, _] : pairs_) out.push_back(w);
  return out;
}

const std::vector<int64_t>& LoraAdapter::a_shape(const std::string& weight_name) const {
  return weights_->get(pairs_.at(weight_name).a).spec.shape;
}
const std::vector<int64_t>& LoraAdapter::b_shape(const std::string& weight_name) const {
  return weights_->get(pairs_.at(weight_name).b).spec.shape;
}

at::Tensor LoraAdapter::delta(const std::string& weight_name) const {
  auto it = pairs_.find(weight_name);
  if (it == pairs_.end()) return {};
  auto A = load_tensor(weights_->get(it->second.a), at::kFloat);
  auto B = load_tensor(weights_->get(it->second.b), at::kFloat);
  auto d = at::matmul(B, A).mul_(config_.scale_of(weight_name.substr(0, weight_name.size() - 7)));
  return it->second.embedding ? d.t().contiguous() : d;
}

void write_merged_model(const std::filesystem::path& base_dir, const LoraAdapter& adapter,
                        const std::filesystem::path& out_dir, const std::string& dtype) {
  io::Checkpoint base(base_dir);
  const ModelConfig base_config = ModelConfig::load(base_dir);
  check_checkpoint_shapes(base_config, base, (base_dir / "config.json").string());
  adapter.check_fits(base_config, base);
  auto config = util::parse_ordered_json(base_config.raw_json, (base_dir / "config.json").string());
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
