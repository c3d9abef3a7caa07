// The parts of anvil quantize that compute with LibTorch: calibration (--calib) and the integer
// safetensors formats. cmd_quantize.cpp has parsed and checked the command line.
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>

#include "common.h"
#include "eval/perplexity.h"
#include "io/atomic_file.h"
#include "io/gguf.h"
#include "model/config.h"
#include "model/gguf_model.h"
#include "model_options.h"
#include "progress.h"
#include "quant/calibration.h"
#include "model_cards.h"
#include "quant/int_export.h"
#include "quant/kquant_gptq.h"
#include "quant_progress.h"
#include "torch_paths.h"
#include "util/blas_info.h"

namespace anvil::cli {
namespace {

// The --calib windows: every file checked first, then tokenized; windows from each in turn.
struct CalibrationText {
  std::vector<int32_t> tokens;
  std::string names;
  int64_t window, budget;
};

CalibrationText calibration_text(const std::filesystem::path& input, const cxxopts::ParseResult& args) {
  std::vector<std::filesystem::path> files;
  CalibrationText text;
  for (const auto& f : args["calib"].as<std::vector<std::string>>()) {
    files.push_back(existing_path(f, "calibration text"));
    text.names += (text.names.empty() ? "" : ", ") + files.back().string();
  }
  const auto tokenizer = load_tokenizer(input);
  text.window = args["calib-window"].as<int64_t>();
  text.budget = args["calib-tokens"].as<int64_t>();
  std::vector<std::vector<int32_t>> sources;
  for (const auto& file : files) sources.push_back(tokenizer.encode_file(file, false));
  text.tokens = quant::interleave_windows(sources, text.window, text.budget);
  return text;
}

// Activation statistics of `model` over the calibration text (GPTQ's Hessians, the importance matrix).
quant::Calibration run_calibration(model::Transformer& model, const CalibrationText& text, const char* label) {
  std::unique_ptr<Progress> bar;
  auto calibration = quant::calibrate(model, text.tokens, text.window, text.budget, [&](int64_t done, int64_t total) {
    if (!bar) bar = std::make_unique<Progress>(label, total, "windows");
    bar->update(done);
  });
  if (bar) bar->finish();
  std::printf("%s: %s tokens of %s\n", label, with_commas(calibration.tokens).c_str(), text.names.c_str());
  return calibration;
}

quant::Calibration run_calibration(const std::filesystem::path& input, const CalibrationText& text) {
  auto model = model::Transformer::load(input);
  return run_calibration(*model, text, "calibration");
}

// --calib-passes 2: GPTQ once more, with Hessians measured on the model that pass 1 quantized,
// so that each layer is fitted to the inputs it will really see, earlier layers' rounding errors
// included (as GPTQ's own layer-by-layer scheme does).
quant::Calibration second_pass(const std::filesystem::path& input, const std::string& output, const std::string& type,
                               int threads, const quant::Calibration& first, const CalibrationText& text,
                               double damp) {
  const io::AtomicDir scratch(output + ".pass1");  // never committed: removed on return, failure or Ctrl-C
  const auto draft = scratch.temp_path() / "draft.gguf";
  const auto importance = quant::imatrix_of(first, model::ModelConfig::load(input)).importance();
  auto opts = export_options(type, threads);
  opts.importance = &importance;
  opts.encoder = quant::gptq_tensor_encoder(first, damp);
  export_gguf_with_progress(input, draft, opts);
  io::GgufFile file(draft);
  auto quantized = model::load_gguf_transformer(file);
  return run_calibration(*quantized, text, "calibration pass 2");
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
    calibration = run_calibration(input, calibration_text(input, args));
    opts.calibration = &calibration;
  }
  std::unique_ptr<Progress> bar;
  opts.progress = [&](int64_t done, int64_t total, uint64_t bytes) {
    if (!bar) bar = std::make_unique<Progress>(args.count("calib") ? "gptq" : "quantize", total, "tensors");
    bar->update_bytes(done, bytes);
  };
  CardBuilder card;
  card.add_input("source", input);
  card.start_hashing();
  auto s = quant::export_int_safetensors(input, output, opts);
  if (bar) bar->finish();
  {
    const std::string fmt = format == quant::IntFormat::Gptq ? "gptq" : "compressed-tensors";
    const std::string grouping = opts.spec.group_size > 0 ? "groups of " + std::to_string(opts.spec.group_size) : "per channel";
    write_directory_card(card, output, {input.filename().string() + " INT" + std::to_string(opts.spec.bits) + " (" + fmt + ")",
                                        input.filename().string() + " quantized to INT" + std::to_string(opts.spec.bits) +
                                            ", " + grouping + ", in the " + fmt + " layout" +
                                            (args.count("calib") ? ", GPTQ-calibrated" : ", round to nearest") + ".",
                                        "quantized", "transformers",
                                        {"anvil", fmt, "int" + std::to_string(opts.spec.bits)}});
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("wrote %s: %s INT%d %s, %lld weights quantized, %lld tensors copied, %s, in %.2f s\n", output.c_str(),
              format == quant::IntFormat::Gptq ? "GPTQ" : "compressed-tensors", opts.spec.bits,
              opts.spec.group_size > 0 ? ("g" + std::to_string(opts.spec.group_size)).c_str() : "per-channel",
              static_cast<long long>(s.quantized), static_cast<long long>(s.copied),
              human_bytes(static_cast<double>(s.output_bytes)).c_str(), seconds);
  return 0;
}

// quantize --eval: the written GGUF against its source, window by window (the protocol of eval).
MeasureOutput measure_against_source(const std::filesystem::path& input, const cxxopts::ParseResult& args) {
  if (!args.count("eval")) return {};
  const auto files = args["eval"].as<std::vector<std::string>>();
  return [input, files](const std::filesystem::path& output) {
    model::LoadOptions load;
    const auto tok = load_tokenizer(input);
    const auto source = load_model(input, load);
    const auto quantized = load_model(output, load);
    std::vector<io::CardMeasurement> rows;
    std::printf("\n%-24s %12s %12s %10s %8s\n", "data", "source ppl", "ppl", "mean KL", "top-1");
    for (const auto& f : files) {
      eval::PerplexityOptions opts;
      opts.threads = at::get_num_threads();
      const auto tokens = tok.encode_file(f, false);
      if (static_cast<int64_t>(tokens.size()) < opts.window)
        fail(f, "has " + std::to_string(tokens.size()) + " tokens, fewer than one window of " + std::to_string(opts.window));
      const auto r = eval::evaluate_perplexity(*quantized, tokens, opts, source.get());
      const std::string name = std::filesystem::path(f).filename().string();
      std::printf("%-24s %12.4f %12.4f %10.6f %7.2f%%\n", name.c_str(), *r.reference_perplexity, r.perplexity, *r.mean_kl,
                  100 * *r.top1_agreement);
      std::fflush(stdout);
      rows.push_back({"source (" + input.filename().string() + ")", name, *r.reference_perplexity, {}, {}});
      rows.push_back({"this file", name, r.perplexity, r.mean_kl, r.top1_agreement});
    }
    return rows;
  };
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
  if (!args.count("calib")) {  // --eval without calibration, perhaps with --imatrix
    auto opts = export_options(args["type"].as<std::string>(), threads);
    const ImatrixFileUse imatrix(args.count("imatrix") ? args["imatrix"].as<std::string>() : "", opts);
    return run_gguf_export(input, args["output"].as<std::string>(), opts, measure_against_source(input, args));
  }
  const std::string method = args["calib-method"].as<std::string>();
  if (method != "gptq" && method != "imatrix") throw UsageError("--calib-method must be gptq or imatrix");
  const int passes = args["calib-passes"].as<int>();
  if (passes != 1 && passes != 2) throw UsageError("--calib-passes must be 1 or 2");
  if (passes == 2 && method != "gptq") throw UsageError("--calib-passes 2 is for --calib-method gptq");
  if (std::filesystem::is_regular_file(input)) fail(input.string(), "--calib needs a Hugging Face model directory");
  const std::string output = args["output"].as<std::string>(), type = args["type"].as<std::string>();
  const double damp = args["damp"].as<double>();
  const auto text = calibration_text(input, args);
  quant::Calibration calibration = run_calibration(input, text);
  if (passes == 2) calibration = second_pass(input, output, type, threads, calibration, text, damp);
  const auto importance = quant::imatrix_of(calibration, model::ModelConfig::load(input)).importance();
  auto opts = export_options(type, threads);
  opts.importance = &importance;
  if (method == "gptq") opts.encoder = quant::gptq_tensor_encoder(calibration, damp);
  opts.imatrix_dataset = text.names;
  opts.imatrix_chunks = text.window > 0 ? calibration.tokens / text.window : 0;
  return run_gguf_export(input, output, opts, measure_against_source(input, args));
}

}  // namespace anvil::cli
