// anvil imatrix MODEL --calib TEXT... -o imatrix.gguf: llama-imatrix's importance matrix, measured
// with anvil's kernel: the same chunks (512 tokens, each starting with BOS), the same sums and
// counts, written in llama.cpp's GGUF imatrix format (or its legacy .dat), so that llama-quantize
// --imatrix and anvil quantize --imatrix take it.
#include <chrono>
#include <cstdio>

#include "commands.h"
#include "common.h"
#include "model_options.h"
#include "progress.h"
#include "quant/imatrix_collect.h"

namespace anvil::cli {
namespace {

// The id the tokenizer puts first when it adds special tokens, if it adds one there.
std::optional<int32_t> leading_special(const tokenizer::Tokenizer& tok) {
  const auto with = tok.encode("a", true), without = tok.encode("a", false);
  if (with.size() > without.size() && !without.empty() && with.back() == without.back() && with.front() != without.front())
    return with.front();
  return std::nullopt;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

int run_imatrix(int argc, char** argv) {
  cxxopts::Options options(argv[0], "Measure an importance matrix as llama-imatrix does (per linear weight, the sum "
                                    "of each input column's squared activation over the calibration text, and the "
                                    "tokens seen) and write it in llama.cpp's format, for anvil quantize --imatrix "
                                    "or llama-quantize --imatrix.");
  options.positional_help("MODEL --calib TEXT... -o OUT.gguf");
  options.add_options()
      ("model", "model directory or .gguf file", cxxopts::value<std::string>())
      ("f,calib", "calibration text files (repeat or separate with commas); each is tokenized on its own, with BOS, "
                  "and cut into whole chunks", cxxopts::value<std::vector<std::string>>())
      ("o,output", "output file (written atomically): .gguf, or the legacy format with --output-format dat",
       cxxopts::value<std::string>())
      ("c,chunk", "tokens per chunk (llama-imatrix -c)", cxxopts::value<int64_t>()->default_value("512"))
      ("chunks", "at most this many chunks in all (-1: every whole chunk)", cxxopts::value<int64_t>()->default_value("-1"))
      ("process-output", "also measure the output projection (lm_head), as llama-imatrix --process-output")
      ("output-format", "gguf or dat (default: dat for a .dat name, else gguf)", cxxopts::value<std::string>())
      ("h,help", "show this help");
  add_runtime_options(options);
  options.parse_positional({"model"});
  auto parsed = parse_command(options, argc, argv, {{"model", "MODEL"}, {"calib", "--calib TEXT"}, {"output", "-o OUTPUT"}});
  if (!parsed) return 0;
  const cxxopts::ParseResult& args = *parsed;
  const auto model_path = existing_path(args["model"].as<std::string>(), "model directory or .gguf file");
  const std::string output = args["output"].as<std::string>();
  quant::ImatrixOptions opts;
  opts.chunk = args["chunk"].as<int64_t>();
  opts.max_chunks = args["chunks"].as<int64_t>();
  opts.process_output = args.count("process-output") > 0;
  if (opts.chunk < 1 || opts.chunk > (1 << 20)) throw UsageError("--chunk must be 1 to 1048576 tokens");
  if (opts.max_chunks == 0 || opts.max_chunks < -1) throw UsageError("--chunks must be positive (or -1 for all)");
  std::string format = args.count("output-format") ? args["output-format"].as<std::string>() : ends_with(output, ".dat") ? "dat" : "gguf";
  if (format != "gguf" && format != "dat") throw UsageError("--output-format must be gguf or dat");
  std::vector<std::string> names;
  for (const auto& f : args["calib"].as<std::vector<std::string>>()) names.push_back(existing_path(f, "calibration text").string());
  const auto load = apply_runtime_options(args);

  const auto t0 = std::chrono::steady_clock::now();
  const auto tok = load_tokenizer(model_path);
  opts.bos = leading_special(tok);
  std::vector<std::vector<int32_t>> sources;
  for (const auto& f : names) sources.push_back(tok.encode_file(f, true));
  auto model = load_model(model_path, load);
  std::unique_ptr<Progress> bar;
  const auto t1 = std::chrono::steady_clock::now();
  const quant::Imatrix m = quant::collect_imatrix(*model, sources, names, opts, [&](int64_t done, int64_t total) {
    if (!bar) bar = std::make_unique<Progress>("imatrix", total, "chunks");
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    char rate[48];
    std::snprintf(rate, sizeof rate, "%.0f tok/s", s > 0 ? static_cast<double>(done * opts.chunk) / s : 0.0);
    bar->update(done, rate);
  });
  if (bar) bar->finish();
  if (format == "dat") quant::write_imatrix_dat(output, m);
  else quant::write_imatrix_gguf(output, m);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("wrote %s: %zu entries, %lld chunks of %lld tokens from %zu file%s, in %.1f s\n", output.c_str(),
              m.entries.size(), static_cast<long long>(m.chunk_count), static_cast<long long>(m.chunk_size), names.size(),
              names.size() == 1 ? "" : "s", seconds);
  return 0;
}

}  // namespace anvil::cli
