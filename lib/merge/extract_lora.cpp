#include "merge/extract_lora.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <atomic>
#include <cmath>
#include <mutex>
#include <set>
#include <thread>

#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/adapter_config.h"
#include "model/architecture.h"
#include "model/config.h"
#include "model/tensor_bridge.h"
#include "model/tensor_role.h"
#include "model/tensor_shapes.h"
#include "util/blas_info.h"
#include "util/error.h"

namespace anvil::merge {
namespace fs = std::filesystem;
namespace {

io::OwnedTensor owned(const std::string& name, const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU, at::kFloat).contiguous();
  io::OwnedTensor o;
  o.spec = {name, io::DType::F32, std::vector<int64_t>(c.sizes().begin(), c.sizes().end())};
  const auto* p = static_cast<const uint8_t*>(c.data_ptr());
  o.bytes.assign(p, p + c.nbytes());
  return o;
}

// The rank for singular values s (descending): max_rank, or fewer where `energy` is reached.
int64_t chosen_rank(const at::Tensor& s, const ExtractLoraOptions& o, double* kept) {
  auto sq = s.to(at::kDouble).square();
  const double total = sq.sum().item<double>();
  auto cumulative = sq.cumsum(0);
  int64_t rank = std::min<int64_t>(o.max_rank, s.numel());
  if (o.energy && total > 0) {
    // The first prefix that reaches the fraction (cumulative sums are non-decreasing).
    const int64_t reach = (cumulative < *o.energy * total).sum().item<int64_t>() + 1;
    rank = std::min(rank, std::min<int64_t>(reach, s.numel()));
  }
  rank = std::max<int64_t>(rank, 1);
  *kept = total > 0 ? cumulative[rank - 1].item<double>() / total : 1.0;
  return rank;
}

}  // namespace

ExtractLoraSummary extract_lora(const fs::path& base_dir, const fs::path& finetune_dir, const fs::path& out_dir,
                                const ExtractLoraOptions& options) {
  if (options.max_rank < 1) fail("--rank", "must be at least 1");
  if (options.energy && !(*options.energy > 0 && *options.energy <= 1)) fail("--energy", "must be in (0, 1]");
  const model::ModelConfig base_config = model::ModelConfig::load(base_dir);
  const model::ModelConfig ft_config = model::ModelConfig::load(finetune_dir);
  io::Checkpoint base(base_dir), ft(finetune_dir);
  model::check_checkpoint_shapes(base_config, base, (base_dir / "config.json").string());
  model::check_checkpoint_shapes(ft_config, ft, (finetune_dir / "config.json").string());
  if (base_config.model_type != ft_config.model_type)
    fail((finetune_dir / "config.json").string(), "model_type '" + ft_config.model_type + "' is not the base's ('" +
                                                      base_config.model_type + "')");
  // Every tensor of the fine-tune must be the base's, same shape: checked before anything is written.
  for (const auto& name : ft.names()) {
    const io::TensorView* b = base.find(name);
    if (!b) fail(finetune_dir.string(), "tensor '" + name + "' is not in the base model " + base_dir.string());
    if (b->spec.shape != ft.get(name).spec.shape)
      fail(finetune_dir.string(), "tensor '" + name + "' has shape " + model::shape_string(ft.get(name).spec.shape) +
                                      ", the base's is " + model::shape_string(b->spec.shape));
  }
  const std::string embedding_name(ft_config.arch->hf_template(model::TensorRole::TokenEmbedding));

  // Tensors in parallel, one per worker, each SVD on single-threaded BLAS: OpenBLAS's own
  // threads inside LAPACK spin on sched_yield when the cores are busy (a 10x slowdown here).
  const auto names = ft.names();
  struct Result {
    enum Kind { Skipped, Unchanged, NotMatrix, Note, Module } kind = Skipped;
    std::string note;
    ExtractedModule module;
    at::Tensor A, B;
  };
  std::vector<Result> results(names.size());
  std::atomic<size_t> next{0};
  std::atomic<int64_t> done{0};
  std::mutex progress_mutex;
  std::exception_ptr failure;
  auto work = [&] {
    c10::InferenceMode guard;
    for (size_t i; (i = next++) < names.size();) {
      try {
        const std::string& name = names[i];
        Result& r = results[i];
        const auto& shape = ft.get(name).spec.shape;
        const bool matrix = shape.size() == 2 && name.ends_with(".weight");
        at::Tensor delta = model::load_tensor(ft.get(name), at::kFloat) - model::load_tensor(base.get(name), at::kFloat);
        const bool embedding = name == embedding_name;
        if (!delta.ne(0).any().item<bool>()) {
          r.kind = matrix ? Result::Unchanged : Result::Skipped;
        } else if (!matrix) {
          r.kind = Result::NotMatrix;
        } else if (embedding && !options.embeddings) {
          r = {Result::Note, "'" + name + "' changed but --no-embeddings leaves it out", {}, {}, {}};
        } else if (embedding && ft_config.tie_word_embeddings) {
          // PEFT applies an embedding LoRA to the input side only, while a tied fine-tune changed
          // the output projection too: no adapter reproduces that, so say so rather than write a wrong one.
          r = {Result::Note, "'" + name + "' changed, but the embeddings are tied to the LM head and PEFT applies an "
                             "embedding LoRA to the input only: left out", {}, {}, {}};
        } else {
          // PEFT's embedding layout factors the transposed update: A [r, vocab], B [hidden, r].
          auto [u, sv, vh] = at::linalg_svd(embedding ? delta.t() : delta, /*full_matrices=*/false);
          r.kind = Result::Module;
          r.module = {name.substr(0, name.size() - 7), 0, 0, embedding};
          r.module.rank = chosen_rank(sv, options, &r.module.kept);
          auto root = sv.narrow(0, 0, r.module.rank).sqrt();
          r.A = vh.narrow(0, 0, r.module.rank) * root.unsqueeze(1);  // sqrt(S_r) V_r^T
          r.B = u.narrow(1, 0, r.module.rank) * root.unsqueeze(0);   // U_r sqrt(S_r)
        }
      } catch (...) {
        std::lock_guard lock(progress_mutex);
        if (!failure) failure = std::current_exception();
        next = names.size();
      }
      const int64_t d = ++done;
      if (options.progress) {
        std::lock_guard lock(progress_mutex);
        options.progress(d, static_cast<int64_t>(names.size()));
      }
    }
  };
  {
    SingleThreadedBlas single;
    const int workers = std::max(1, std::min<int>(at::get_num_threads(), static_cast<int>(names.size())));
    std::vector<std::thread> pool;
    for (int w = 1; w < workers; ++w) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
  }
  if (failure) std::rethrow_exception(failure);

  ExtractLoraSummary summary;
  std::vector<io::OwnedTensor> tensors;
  for (size_t i = 0; i < names.size(); ++i) {
    Result& r = results[i];
    switch (r.kind) {
      case Result::Skipped: break;
      case Result::Unchanged: ++summary.unchanged; break;
      case Result::NotMatrix: summary.not_decomposable.push_back(names[i]); break;
      case Result::Note: summary.notes.push_back(r.note); break;
      case Result::Module: {
        const std::string prefix = "base_model.model." + r.module.module + (r.module.embedding ? ".lora_embedding_" : ".lora_");
        const std::string suffix = r.module.embedding ? "" : ".weight";
        tensors.push_back(owned(prefix + "A" + suffix, r.A));
        tensors.push_back(owned(prefix + "B" + suffix, r.B));
        summary.modules.push_back(r.module);
        r.A = r.B = at::Tensor();
      }
    }
  }
  if (summary.modules.empty())
    fail(finetune_dir.string(), "no linear layer differs from the base model's: there is nothing to extract");

  // adapter_config.json: PEFT's keys (those of ../shared/models/lora-random). r and lora_alpha
  // are max_rank (scale 1); a module of another rank gets rank_pattern and alpha_pattern entries
  // equal to its rank, as mergekit-extract-lora writes them.
  model::AdapterConfig cfg;
  cfg.r = options.max_rank;
  cfg.alpha = static_cast<double>(options.max_rank);
  std::set<std::string> targets;
  for (const auto& mod : summary.modules) {
    targets.insert(mod.module.substr(mod.module.rfind('.') + 1));
    if (mod.rank != options.max_rank) {
      cfg.rank_pattern.emplace_back(mod.module, mod.rank);
      cfg.alpha_pattern.emplace_back(mod.module, static_cast<double>(mod.rank));
    }
  }
  cfg.target_modules.assign(targets.begin(), targets.end());

  io::AtomicDir out(out_dir);
  io::write_text_file(out.temp_path() / "adapter_config.json",
                      model::peft_adapter_config_json(cfg, base_dir.string(), 0.0, true));
  io::write_safetensors(out.temp_path() / "adapter_model.safetensors", tensors, {{"format", "pt"}});
  for (const auto& t : tensors) summary.bytes_written += t.bytes.size();
  out.commit();
  return summary;
}

}  // namespace anvil::merge
