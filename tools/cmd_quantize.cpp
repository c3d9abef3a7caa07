// anvil quantize IN -o OUT.gguf --type T: llama-quantize's types and mixes, byte-identical.
// anvil quantize IN -o OUT_DIR --format compressed-tensors|gptq --bits 4|8: integer safetensors,
// round-to-nearest or, with --calib, GPTQ.
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>

#include "commands.h"
#include "common.h"
#include "io/atomic_file.h"
#include "progress.h"
#include "quant/calibration.h"
#include "quant/int_export.h"
#include "quant/quant_mix.h"
#include "quant_progress.h"
#include "util/blas_info.h"

namespace anvil::cli {
namespace {

// Activation statistics of the model over --calib text (GPTQ's Hessians, the importance matrix).
quant::Calibration run_calibration(const std::filesystem::path& input, const cxxopts::ParseResult& args) {
  auto calib_file = existing_path(args["calib"].as<std::string>(), "calibration text");
  auto model = model::Transformer::load(input);
  auto tokens = load_tokenizer(input).encode(io::read_text_file(calib_file), false);
  std::unique_ptr<Progress> bar;
  auto calibration = quant::calibrate(*model, tokens, args["calib-window"].as<int64_t>(),
                                      args["calib-tokens"].as<int64_t>(), [&](int64_t done, int64_t total) {
                                        if (!bar) bar = std::make_unique<Progress>("calibrate", total, "windows");
                                        bar->update(done);
                                      });
  if (bar) bar->finish();
  std::printf("calibration: %s tokens of %s\n", with_commas(calibration.tokens).c_str(), calib_file.string().c_str());
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

int run_quantize(int argc, char** argv) {
  std::string types;
  for (auto n : quant::quant_mix_names()) types += (types.empty() ? "" : ", ") + std::string(n);
  cxxopts::Options options(argv[0], "Quantize a model. GGUF (default): a Hugging Face directory or GGUF into a GGUF "
                                    "with llama.cpp's encoders and per-tensor choices (the bytes equal "
                                    "llama-quantize's without an importance matrix); types: " + types +
                                    ". --format compressed-tensors|gptq: INT4/INT8 safetensors for vLLM and "
                                    "transformers, round-to-nearest or, with --calib, GPTQ.");
  options.positional_help("INPUT -o OUTPUT [--type T | --format F --bits B]");
  options.add_options()
      ("input", "model directory or .gguf file", cxxopts::value<std::string>())
      ("o,output", "output .gguf file or directory (written atomically)", cxxopts::value<std::string>())
      ("type", "GGUF file type, e.g. Q4_K_M, Q8_0, Q6_K", cxxopts::value<std::string>())
      ("format", "gguf, compressed-tensors or gptq", cxxopts::value<std::string>()->default_value("gguf"))
      ("bits", "integer formats: 4 or 8", cxxopts::value<int>()->default_value("4"))
      ("group-size", "integer formats: input columns per scale (0: per channel)",
       cxxopts::value<int64_t>()->default_value("128"))
      ("calib", "calibration text: GPTQ instead of round-to-nearest (integer formats), an importance matrix for the k-quants (GGUF)", cxxopts::value<std::string>())
      ("calib-tokens", "calibration tokens at most", cxxopts::value<int64_t>()->default_value("65536"))
      ("calib-window", "tokens per calibration window", cxxopts::value<int64_t>()->default_value("256"))
      ("calib-method", "GGUF with --calib: gptq (importance-weighted scales plus GPTQ error compensation) or imatrix "
       "(importance-weighted scales only, as llama.cpp)", cxxopts::value<std::string>()->default_value("gptq"))
      ("damp", "GPTQ dampening, a fraction of the Hessian's mean diagonal", cxxopts::value<double>()->default_value("0.01"))
      ("threads", "CPU threads (default: all cores)", cxxopts::value<int>())
      ("h,help", "show this help");
  options.parse_positional({"input"});
  auto args = parse_or_usage(options, argc, argv);
  if (wants_help(args, options)) return 0;
  if (!args.count("input")) throw UsageError("missing INPUT");
  if (!args.count("output")) throw UsageError("missing -o OUTPUT");
  const int threads = thread_count(args);
  const auto input = existing_path(args["input"].as<std::string>(), "input model");
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
  if (!args.count("type")) throw UsageError("missing --type (one of " + types + ")");
  const std::string type = args["type"].as<std::string>();
  if (!quant::find_quant_mix(type)) throw UsageError("unknown --type '" + type + "' (one of " + types + ")");
  std::map<std::string, std::vector<float>> importance;
  quant::Calibration calibration;
  const std::string method = args["calib-method"].as<std::string>();
  if (method != "gptq" && method != "imatrix") throw UsageError("--calib-method must be gptq or imatrix");
  if (args.count("calib")) {
    if (std::filesystem::is_regular_file(input)) fail(input.string(), "--calib needs a Hugging Face model directory");
    calibration = run_calibration(input, args);
    importance = quant::importance_matrix(calibration);
  }
  const bool calibrated = args.count("calib") > 0;
  return run_gguf_export(input, args["output"].as<std::string>(), type, threads, calibrated ? &importance : nullptr,
                         calibrated && method == "gptq" ? &calibration : nullptr, args["damp"].as<double>());
}

}  // namespace anvil::cli
