#include "model_options.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>

#include "common.h"
#include "model/gguf_model.h"
#include "model/lora_adapter.h"
#include "model/tensor_bridge.h"
#include "util/blas_info.h"

namespace anvil::cli {

void add_runtime_options(cxxopts::Options& options) {
  options.add_options("runtime")
      ("threads", "CPU threads (default: all cores)", cxxopts::value<int>())
      ("device", "cpu or cuda", cxxopts::value<std::string>()->default_value("cpu"))
      ("dtype", "compute dtype: f32, or bf16/f16 on cuda", cxxopts::value<std::string>()->default_value("f32"))
      ("expand-weights", "hold every weight in fp32 instead of computing from the stored bytes (more memory; for comparisons)");
}

model::LoadOptions apply_runtime_options(const cxxopts::ParseResult& args) {
  const int threads = thread_count(args);
  at::set_num_threads(threads);
  set_blas_threads(threads);
  model::LoadOptions load;
  load.keep_stored = !args.count("expand-weights");
  std::string device = args["device"].as<std::string>();
  if (device == "cuda") {
    if (!at::hasCUDA()) throw UsageError("--device cuda: no CUDA device (this LibTorch is CPU-only or no GPU is visible)");
    load.device = at::Device(at::kCUDA);
  } else if (device != "cpu") {
    throw UsageError("--device must be cpu or cuda, not '" + device + "'");
  }
  try {
    load.compute_dtype = model::parse_float_dtype(args["dtype"].as<std::string>());
  } catch (const Error& e) {
    throw UsageError(std::string("--dtype: ") + e.what());
  }
  if (load.compute_dtype != at::kFloat && device == "cpu")
    throw UsageError("--dtype " + args["dtype"].as<std::string>() + " is for --device cuda; CPU computes in f32");
  return load;
}

std::unique_ptr<model::Transformer> load_model(const std::filesystem::path& path, const model::LoadOptions& options,
                                               const std::string& adapter_dir) {
  if (model::is_gguf_file(path)) {
    if (!adapter_dir.empty()) throw UsageError("--adapter applies to Hugging Face model directories, not GGUF files");
    return model::load_gguf_transformer(std::make_shared<const io::GgufFile>(path), options);
  }
  if (!std::filesystem::is_directory(path))
    fail(path.string(), "is neither a GGUF file (its magic is not GGUF) nor a model directory");
  if (adapter_dir.empty()) return model::Transformer::load(path, options);
  auto adapter = model::LoraAdapter::load(existing_path(adapter_dir, "adapter directory"));
  return model::Transformer::load(path, options, adapter.get());
}

}  // namespace anvil::cli
