#include "common.h"

#include <ATen/Parallel.h>
#include <ATen/Context.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <thread>

#include "model/gguf_model.h"
#include "model/lora_adapter.h"
#include "model/tensor_bridge.h"
#include "tokenizer/gguf_vocab.h"
#include "util/blas_info.h"

namespace anvil::cli {

void add_runtime_options(cxxopts::Options& options) {
  options.add_options("runtime")
      ("threads", "CPU threads (default: all cores)", cxxopts::value<int>())
      ("device", "cpu or cuda", cxxopts::value<std::string>()->default_value("cpu"))
      ("dtype", "compute dtype: f32, or bf16/f16 on cuda", cxxopts::value<std::string>()->default_value("f32"));
}

int thread_count(const cxxopts::ParseResult& args) {
  if (!args.count("threads")) return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int threads = args["threads"].as<int>();
  if (threads < 1) throw UsageError("--threads must be at least 1");
  return threads;
}

model::LoadOptions apply_runtime_options(const cxxopts::ParseResult& args) {
  const int threads = thread_count(args);
  at::set_num_threads(threads);
  set_blas_threads(threads);
  model::LoadOptions load;
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

cxxopts::ParseResult parse_or_usage(cxxopts::Options& options, int argc, char** argv) {
  try {
    return options.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    throw UsageError(e.what());
  }
}

bool wants_help(const cxxopts::ParseResult& args, const cxxopts::Options& options) {
  if (!args.count("help")) return false;
  std::cout << options.help() << std::flush;
  return true;
}

std::filesystem::path existing_path(const std::string& path, const std::string& what) {
  if (path.empty()) throw UsageError("missing " + what);
  if (!std::filesystem::exists(path)) fail(path, what + " not found");
  return path;
}

std::unique_ptr<model::Transformer> load_model(const std::filesystem::path& path, const model::LoadOptions& options,
                                               const std::string& adapter_dir) {
  if (model::is_gguf_file(path)) {
    if (!adapter_dir.empty()) throw UsageError("--adapter applies to Hugging Face model directories, not GGUF files");
    return model::load_gguf_transformer(io::GgufFile(path), options);
  }
  if (adapter_dir.empty()) return model::Transformer::load(path, options);
  auto adapter = model::LoraAdapter::load(existing_path(adapter_dir, "adapter directory"));
  return model::Transformer::load(path, options, adapter.get());
}

tokenizer::Tokenizer load_tokenizer(const std::filesystem::path& model_path) {
  if (model::is_gguf_file(model_path)) {
    io::GgufFile gguf(model_path);
    return tokenizer::Tokenizer::from_json(tokenizer::tokenizer_json_from_gguf(gguf), model_path.string());
  }
  return tokenizer::Tokenizer::load(model_path);
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) {
    b /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

std::string with_commas(int64_t n) {
  std::string s = std::to_string(n < 0 ? -n : n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return n < 0 ? "-" + s : s;
}

}  // namespace anvil::cli
