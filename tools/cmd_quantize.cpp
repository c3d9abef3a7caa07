// anvil quantize IN -o OUT.gguf --type T: llama-quantize's types and mixes, byte-identical.
#include "commands.h"
#include "common.h"
#include "quant/quant_mix.h"
#include "quant_progress.h"

namespace anvil::cli {

int run_quantize(int argc, char** argv) {
  std::string types;
  for (auto n : quant::quant_mix_names()) types += (types.empty() ? "" : ", ") + std::string(n);
  cxxopts::Options options(argv[0], "Quantize a Hugging Face model directory or a GGUF into a GGUF, with llama.cpp's "
                                    "encoders and per-tensor choices (the bytes equal llama-quantize's without an "
                                    "importance matrix). Types: " + types + ".");
  options.positional_help("INPUT -o OUT.gguf --type T");
  options.add_options()
      ("input", "model directory or .gguf file", cxxopts::value<std::string>())
      ("o,output", "output .gguf (written atomically)", cxxopts::value<std::string>())
      ("type", "file type, e.g. Q4_K_M, Q8_0, Q6_K", cxxopts::value<std::string>())
      ("threads", "CPU threads (default: all cores)", cxxopts::value<int>())
      ("h,help", "show this help");
  options.parse_positional({"input"});
  auto args = parse_or_usage(options, argc, argv);
  if (wants_help(args, options)) return 0;
  if (!args.count("input")) throw UsageError("missing INPUT");
  if (!args.count("output")) throw UsageError("missing -o OUT.gguf");
  if (!args.count("type")) throw UsageError("missing --type (one of " + types + ")");
  const std::string type = args["type"].as<std::string>();
  if (!quant::find_quant_mix(type)) throw UsageError("unknown --type '" + type + "' (one of " + types + ")");
  const int threads = thread_count(args);
  return run_gguf_export(existing_path(args["input"].as<std::string>(), "input model"), args["output"].as<std::string>(),
                         type, threads);
}

}  // namespace anvil::cli
