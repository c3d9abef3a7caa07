// anvil quantize IN -o OUT.gguf --type T: llama-quantize's types and mixes, byte-identical.
// anvil quantize IN -o OUT_DIR --format compressed-tensors|gptq --bits 4|8: integer safetensors,
// round-to-nearest or, with --calib, GPTQ. Those and --calib need LibTorch (cmd_quantize_torch.cpp);
// plain GGUF quantization runs in the light front end.
#include "commands.h"
#include "common.h"
#include "quant/quant_mix.h"
#include "quant_progress.h"
#include "torch_paths.h"

namespace anvil::cli {

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
      ("calib", "calibration text files (repeat the option or separate with commas; windows are taken from "
       "each in turn, so mix kinds of text): GPTQ instead of round-to-nearest (integer formats), importance-"
       "weighted scales plus GPTQ for the k-quants (GGUF)", cxxopts::value<std::vector<std::string>>())
      ("calib-tokens", "calibration tokens at most", cxxopts::value<int64_t>()->default_value("65536"))
      ("calib-window", "tokens per calibration window", cxxopts::value<int64_t>()->default_value("256"))
      ("imatrix", "GGUF: an importance matrix file (llama-imatrix's GGUF or legacy .dat, or anvil imatrix's): the "
       "k-quant scales are fitted with it and the mix takes llama-quantize's imatrix rules, so the bytes equal "
       "llama-quantize --imatrix's", cxxopts::value<std::string>())
      ("calib-method", "GGUF with --calib: gptq (importance-weighted scales plus GPTQ error compensation) or imatrix "
       "(importance-weighted scales only, as llama.cpp)", cxxopts::value<std::string>()->default_value("gptq"))
      ("calib-passes", "GGUF with --calib gptq: 2 measures the Hessians again on the model pass 1 quantized, so "
       "each layer is fitted to the inputs it will see (twice the time)", cxxopts::value<int>()->default_value("1"))
      ("eval", "GGUF: after quantizing, score the result against its source on these text files (perplexity, KL "
               "divergence, top-1 agreement) and put the table in its card", cxxopts::value<std::vector<std::string>>())
      ("damp", "GPTQ dampening, a fraction of the Hessian's mean diagonal", cxxopts::value<double>()->default_value("0.01"))
      ("threads", "CPU threads (default: all cores)", cxxopts::value<int>())
      ("h,help", "show this help");
  options.parse_positional({"input"});
  auto parsed = parse_command(options, argc, argv, {{"input", "INPUT"}, {"output", "-o OUTPUT"}});
  if (!parsed) return 0;
  const cxxopts::ParseResult& args = *parsed;
  const int threads = thread_count(args);
  existing_path(args["input"].as<std::string>(), "input model");
  const std::string format = args["format"].as<std::string>();
  if (format == "gguf") {
    if (!args.count("type")) throw UsageError("missing --type (one of " + types + ")");
    const std::string type = args["type"].as<std::string>();
    if (!quant::find_quant_mix(type)) throw UsageError("unknown --type '" + type + "' (one of " + types + ")");
    if (args.count("eval"))
      for (const auto& f : args["eval"].as<std::vector<std::string>>()) existing_path(f, "eval data file");
    if (args.count("imatrix")) {
      existing_path(args["imatrix"].as<std::string>(), "importance matrix");
      // An imatrix file holds the Hessians' diagonals only: GPTQ needs the text itself.
      if (args.count("calib")) throw UsageError("--imatrix and --calib both give the importance: use one");
      if (args.count("calib-method") && args["calib-method"].as<std::string>() != "imatrix")
        throw UsageError("--imatrix weights the scales (--calib-method imatrix); GPTQ needs --calib");
    }
    if (!args.count("calib") && !args.count("eval")) {
      auto opts = export_options(type, threads);
      const ImatrixFileUse imatrix(args.count("imatrix") ? args["imatrix"].as<std::string>() : "", opts);
      return run_gguf_export(args["input"].as<std::string>(), args["output"].as<std::string>(), opts);
    }
  }
  return quantize_with_torch(args);
}

}  // namespace anvil::cli
