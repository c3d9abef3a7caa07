// anvil convert: Hugging Face directory -> GGUF (llama.cpp's converter), GGUF -> Hugging Face.
// Merging a LoRA adapter needs LibTorch (cmd_convert_torch.cpp); the rest runs in the light front end.
#include <cstdio>

#include "commands.h"
#include "common.h"
#include "model_cards.h"
#include "model/gguf_tensors.h"
#include "quant/gguf_export.h"
#include "quant_progress.h"
#include "torch_paths.h"

namespace anvil::cli {

int run_convert(int argc, char** argv) {
  cxxopts::Options options(argv[0], "Convert a Hugging Face model directory to GGUF (tensor names, rotary layout, "
                                    "hyperparameters and tokenizer as llama.cpp's converter writes them), or a "
                                    "GGUF back to a Hugging Face directory (dequantized).");
  options.positional_help("INPUT -o OUTPUT");
  options.add_options()
      ("input", "model directory or .gguf file", cxxopts::value<std::string>())
      ("o,output", "OUT.gguf (from a directory) or OUT_DIR (from a .gguf)", cxxopts::value<std::string>())
      ("type", "GGUF tensor type: f32, f16, bf16 or q8_0 (other types: anvil quantize)",
       cxxopts::value<std::string>()->default_value("f16"))
      ("out-dtype", "safetensors dtype when writing a Hugging Face directory: f32, bf16 or f16 (from a GGUF: "
                    "default f32; with --merge-adapter: default the base's)",
       cxxopts::value<std::string>())
      ("merge-adapter", "merge this PEFT LoRA adapter into the input model and write a Hugging Face directory",
       cxxopts::value<std::string>())
      ("threads", "CPU threads (default: all cores)", cxxopts::value<int>())
      ("h,help", "show this help");
  options.parse_positional({"input"});
  auto parsed = parse_command(options, argc, argv, {{"input", "INPUT"}, {"output", "-o OUTPUT"}});
  if (!parsed) return 0;
  const cxxopts::ParseResult& args = *parsed;
  auto input = existing_path(args["input"].as<std::string>(), "input model");
  const std::filesystem::path output = args["output"].as<std::string>();
  const int threads = thread_count(args);

  const std::string out_dtype = args.count("out-dtype") ? args["out-dtype"].as<std::string>() : "";
  if (args.count("merge-adapter")) {
    if (model::is_gguf_file(input)) throw UsageError("--merge-adapter needs a Hugging Face model directory as input");
    return convert_merging_adapter(args);
  }
  if (model::is_gguf_file(input)) {
    CardBuilder card;
    card.add_input("source", input);
    card.start_hashing();
    quant::export_hf_from_gguf(input, output, out_dtype.empty() ? "f32" : out_dtype);
    const std::string name = input.filename().string();
    write_directory_card(card, output, {name + " as a Hugging Face model",
                                        name + " converted from GGUF to a Hugging Face directory (" +
                                            (out_dtype.empty() ? "f32" : out_dtype) + ", dequantized where quantized).",
                                        "", "transformers", {"anvil"}});
    std::printf("wrote %s (Hugging Face, %s)\n", output.string().c_str(), out_dtype.empty() ? "f32" : out_dtype.c_str());
    return 0;
  }
  const std::string type = args["type"].as<std::string>();
  if (type != "f32" && type != "f16" && type != "bf16" && type != "q8_0" && type != "F32" && type != "F16" &&
      type != "BF16" && type != "Q8_0")
    throw UsageError("--type must be f32, f16, bf16 or q8_0 (use anvil quantize for other types)");
  return run_gguf_export(input, output, export_options(type, threads));
}

}  // namespace anvil::cli
