// The parts of anvil quantize that compute with LibTorch: calibration (--calib) and the integer
// safetensors formats. cmd_quantize.cpp has parsed and checked the command line.
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>

#include "common.h"
#include "io/atomic_file.h"
#include "model_options.h"
#include "progress.h"
#include "quant/calibration.h"
#include "quant/int_export.h"
#include "quant/kquant_gptq.h"
#include "quant_progress.h"
#include "torch_paths.h"
#include "util/blas_info.h"

namespace anvil::cli {
namespace {

// Activation statistics of the model over --calib text (GPTQ's Hessians, the importance matrix).
quant::Calibration run_calibration(const std::filesystem::path& input, const cxxopts::ParseResult& args) {
  std::vector<std::filesystem::path> files;  // all checked before the model loads
  std::string names;
  for (const auto& f : args["calib"].as<std::vector<std::string>>()) {
    files.push_back(existing_path(f, "calibration text"));
    names += (names.empty() ? "" : ", ") + files.back().string();
  }
  auto model = model::Transformer::load(input);
  const auto tokenizer = load_tokenizer(input);
  const int64_t window = args["calib-window"].as<int64_t>(), budget = args["calib-tokens"].as<int64_t>();
  std::vector<std::vector<int32_t>> sources;
  for (const auto& file : files) sources.push_back(tokenizer.encode(io::read_text_file(file), false));
  const auto tokens = quant::interleave_windows(sources, window, budget);
  std::unique_ptr<Progress> bar;
  auto calibration = quant::calibrate(*model, tokens, window, budget, [&](int64_t done, int64_t total) {
                                        if (!bar) bar = std::make_unique<Progress>("calibrate", total, "windows");
                                        bar->update(done);
                                      });
  if (bar) bar->finish();
  std::printf("calibration: %s tokens of %s\n", with_commas(calibration.tokens).c_str(), names.c_str());
  return calibration;
}

int run_int_export(const std::filesystem::path& input, const std::string& output, quant::IntFormat format,
                   const cxxopts::ParseResult& args) {
  quant::IntExportOptions opts;
  opts.format = format;
  opts.spec.bits = args["bits"].as<int>();
  opts.spec.group_size = args["group-size"].as<int64_t>();
  opts.damp = args["damp"].as<double>();
  if (opts.spec.bits != 4 && opts.spec.bits != 8) throw UsageError("--bits must be 4 or 8");
  if (opts.spec.group_size < 0) throw UsageError("--group-size must be 0 (per channel) or positive");
  if (std::filesystem::is_regular_file(input)) fail(input.string(), "integer formats need a Hugging Face model directory");
  const auto t0 = std::chrono::steady_clock::now();
  quant::Calibration calibration;
  if (args.count("calib")) {
    calibration = run_calibration(input, args);
    opts.calibration = &calibration;
  }
  std::unique_ptr<Progress> bar;
  opts.progress = [&](int64_t done, int64_t total, uint64_t bytes) {
    if (!bar) bar = std::make_unique<Progress>(args.count("calib") ? "gptq" : "quantize", total, "tensors");
    bar->update_bytes(done, bytes);
  };
  auto s = quant::export_int_safetensors(input, output, opts);
  if (bar) bar->finish();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("wrote %s: %s INT%d %s, %lld weights quantized, %lld tensors copied, %s, in %.2f s\n", output.c_str(),
              format == quant::IntFormat::Gptq ? "GPTQ" : "compressed-tensors", opts.spec.bits,
              opts.spec.group_size > 0 ? ("g" + std::to_string(opts.spec.group_size)).c_str() : "per-channel",
              static_cast<long long>(s.quantized), static_cast<long long>(s.copied),
              human_bytes(static_cast<double>(s.output_bytes)).c_str(), seconds);
  return 0;
}

}  // namespace

int quantize_with_torch(const cxxopts::ParseResult& args) {
  const int threads = thread_count(args);
  const std::filesystem::path input = args["input"].as<std::string>();
  const std::string format = args["format"].as<std::string>();
  if (format != "gguf") {
    auto f = quant::parse_int_format(format);
    if (!f) throw UsageError("unknown --format '" + format + "' (gguf, compressed-tensors or gptq)");
    if (args.count("type")) throw UsageError("--type is for GGUF; integer formats take --bits and --group-size");
    // GPTQ's column loop is many tiny operators: splitting each across threads only spins. BLAS
    // keeps the threads for the calibration GEMMs.
    at::set_num_threads(1);
    set_blas_threads(threads);
    return run_int_export(input, args["output"].as<std::string>(), *f, args);
  }
  const std::string method = args["calib-method"].as<std::string>();
  if (method != "gptq" && method != "imatrix") throw UsageError("--calib-method must be gptq or imatrix");
  if (std::filesystem::is_regular_file(input)) fail(input.string(), "--calib needs a Hugging Face model directory");
  const quant::Calibration calibration = run_calibration(input, args);
  const auto importance = quant::importance_matrix(calibration);
  return run_gguf_export(input, args["output"].as<std::string>(), args["type"].as<std::string>(), threads, &importance,
                         method == "gptq" ? quant::gptq_tensor_encoder(calibration, args["damp"].as<double>())
                                          : quant::TensorEncoder{});
}

}  // namespace anvil::cli
