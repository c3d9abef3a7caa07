#include "train/lora_parameters.h"

#include <ATen/core/grad_mode.h>  // at::NoGradGuard (not reached through ATen.h in LibTorch 2.x)
#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <set>

#include "io/atomic_file.h"
#include "model/adapter_config.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/tensor_bridge.h"
#include "model/transformer.h"
#include "util/error.h"

namespace anvil::train {
namespace fs = std::filesystem;
namespace {

// PEFT matches a target against the module name itself or its last dotted components.
bool targeted(const std::string& module, const std::vector<std::string>& targets) {
  for (const auto& t : targets) {
    if (t == "all-linear" || module == t) return true;
    if (module.size() > t.size() && module.compare(module.size() - t.size(), t.size(), t) == 0 &&
        module[module.size() - t.size() - 1] == '.')
      return true;
  }
  return false;
}

}  // namespace

LoraParameters::LoraParameters(const model::Transformer& model, const LoraSpec& spec, uint64_t seed,
                               at::Device device)
    : spec_(spec) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::set<std::string> matched;
  for (const auto& weight : model.adaptable_weights()) {
    const std::string module = weight.substr(0, weight.size() - std::string(".weight").size());
    if (!targeted(module, spec.target_modules)) continue;
    for (const auto& t : spec.target_modules)
      if (targeted(module, {t})) matched.insert(t);
    auto shape = model.adaptable_shape(weight);  // [out, in]
    const double bound = 1.0 / std::sqrt(static_cast<double>(shape[1]));
    at::Tensor A = at::empty({spec.r, shape[1]}, at::kFloat).uniform_(-bound, bound, gen).to(device);
    at::Tensor B = at::zeros({shape[0], spec.r}, at::TensorOptions().dtype(at::kFloat).device(device));
    A.requires_grad_(true);
    B.requires_grad_(true);
    modules_.push_back(module);
    short_names_.push_back(module.substr(module.rfind('.') + 1));
    names_.push_back("base_model.model." + module + ".lora_A.weight");
    tensors_.push_back(A);
    names_.push_back("base_model.model." + module + ".lora_B.weight");
    tensors_.push_back(B);
  }
  for (const auto& t : spec.target_modules)
    if (!matched.count(t))
      fail(spec.where, "lora.target_modules: '" + t + "' matches no linear layer of the model (e.g. q_proj, down_proj, "
                       "all-linear)");
}

void LoraParameters::attach(model::Transformer& model) const {
  for (size_t i = 0; i < modules_.size(); ++i)
    model.attach_lora(modules_[i] + ".weight", tensors_[2 * i], tensors_[2 * i + 1], spec_.scale(), spec_.dropout);
}

int64_t LoraParameters::count() const {
  int64_t n = 0;
  for (const auto& t : tensors_) n += t.numel();
  return n;
}

void LoraParameters::save(const fs::path& dir, const std::string& base_model,
                          const std::vector<at::Tensor>& tensors) const {
  std::set<std::string> targets(short_names_.begin(), short_names_.end());
  model::AdapterConfig cfg;
  cfg.r = spec_.r;
  cfg.alpha = spec_.alpha;
  cfg.rslora = spec_.rslora;
  cfg.target_modules.assign(targets.begin(), targets.end());
  io::write_text_file(dir / "adapter_config.json", model::peft_adapter_config_json(cfg, base_model, spec_.dropout, true));
  save_tensors(dir / "adapter_model.safetensors", names_, tensors);
}

void LoraParameters::load(const fs::path& dir) {
  auto loaded = load_tensors(dir / "adapter_model.safetensors", names_, tensors_[0].device());
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    if (loaded[i].sizes() != tensors_[i].sizes())
      fail((dir / "adapter_model.safetensors").string(), "'" + names_[i] + "' has the wrong shape for this recipe");
    tensors_[i].copy_(loaded[i]);
  }
}

void save_tensors(const fs::path& file, const std::vector<std::string>& names, const std::vector<at::Tensor>& tensors) {
  std::vector<io::OwnedTensor> owned;
  for (size_t i = 0; i < names.size(); ++i) {
    at::Tensor t = tensors[i].detach().to(at::kCPU, at::kFloat).contiguous();
    io::OwnedTensor o;
    o.spec = {names[i], io::DType::F32, std::vector<int64_t>(t.sizes().begin(), t.sizes().end())};
    auto* p = static_cast<const uint8_t*>(t.data_ptr());
    o.bytes.assign(p, p + t.nbytes());
    owned.push_back(std::move(o));
  }
  io::write_safetensors(file, owned, {{"format", "pt"}});
}

std::vector<at::Tensor> load_tensors(const fs::path& file, const std::vector<std::string>& names, at::Device device) {
  if (!fs::exists(file)) fail(file.string(), "not found");
  io::Checkpoint ckpt(file);
  std::vector<at::Tensor> out;
  for (const auto& n : names) {
    const io::TensorView* v = ckpt.find(n);
    if (!v) fail(file.string(), "has no tensor '" + n + "'");
    out.push_back(model::load_tensor(*v, at::kFloat, device));
  }
  return out;
}

}  // namespace anvil::train
