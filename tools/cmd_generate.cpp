// anvil generate MODEL --prompt TEXT: streams the continuation to stdout as it is decoded.
#include <cstdio>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "model_options.h"
#include "eval/generate.h"
#include "tokenizer/tokenizer.h"

namespace anvil::cli {
namespace {

// Length of the longest prefix of `s` that does not end inside a UTF-8 sequence.
size_t complete_utf8_prefix(const std::string& s) {
  size_t n = s.size();
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    unsigned char c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    size_t need = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
    return back < need ? n - back : n;
  }
  return n;
}

}  // namespace

int run_generate(int argc, char** argv) {
  cxxopts::Options options(argv[0], "Continue a prompt with MODEL, streaming the text as it is generated. Greedy "
                                    "by default; --temperature > 0 samples (with --top-p, --top-k, --seed).");
  options.positional_help("MODEL --prompt TEXT");
  options.add_options()
      ("model", "model directory or .gguf file", cxxopts::value<std::string>())
      ("p,prompt", "prompt text", cxxopts::value<std::string>())
      ("n,max-tokens", "maximum new tokens", cxxopts::value<int64_t>()->default_value("128"))
      ("temperature", "0 = greedy", cxxopts::value<double>()->default_value("0"))
      ("top-p", "nucleus sampling mass", cxxopts::value<double>()->default_value("1"))
      ("top-k", "sample among the k most likely tokens (0 = off)", cxxopts::value<int64_t>()->default_value("0"))
      ("seed", "random seed for sampling", cxxopts::value<uint64_t>()->default_value("0"))
      ("no-bos", "do not add the tokenizer's special tokens (BOS) to the prompt")
      ("ignore-eos", "keep generating past end-of-sequence tokens")
      ("adapter", "apply a PEFT LoRA adapter directory to MODEL", cxxopts::value<std::string>())
      ("h,help", "show this help");
  add_runtime_options(options);
  options.parse_positional({"model"});
  auto parsed = parse_command(options, argc, argv, {{"model", "MODEL"}, {"prompt", "--prompt TEXT"}});
  if (!parsed) return 0;
  const cxxopts::ParseResult& args = *parsed;
  if (args["max-tokens"].as<int64_t>() < 1) throw UsageError("--max-tokens must be at least 1");
  auto model_dir = existing_path(args["model"].as<std::string>(), "model directory or .gguf file");
  auto load = apply_runtime_options(args);
  auto tok = load_tokenizer(model_dir);
  auto model = load_model(model_dir, load, args.count("adapter") ? args["adapter"].as<std::string>() : "");
  tok.check_fits_model(model->config().vocab_size, model_dir.string());

  const std::string prompt = args["prompt"].as<std::string>();
  auto prompt_ids = tok.encode(prompt, !args.count("no-bos"));
  eval::GenerateOptions opts;
  opts.max_new_tokens = args["max-tokens"].as<int64_t>();
  opts.sampling.temperature = args["temperature"].as<double>();
  opts.sampling.top_p = args["top-p"].as<double>();
  opts.sampling.top_k = args["top-k"].as<int64_t>();
  opts.sampling.seed = args["seed"].as<uint64_t>();
  if (!args.count("ignore-eos")) opts.stop_tokens = model->config().eos_token_ids;

  std::vector<int32_t> generated;
  size_t printed = 0;
  std::fputs(prompt.c_str(), stdout);
  std::fflush(stdout);
  opts.on_token = [&](int32_t token) {
    generated.push_back(token);
    std::string text = tok.decode(generated);
    size_t ready = complete_utf8_prefix(text);
    if (ready > printed) {
      std::fwrite(text.data() + printed, 1, ready - printed, stdout);
      std::fflush(stdout);
      printed = ready;
    }
    return true;
  };
  auto r = eval::generate(*model, prompt_ids, opts);
  std::string text = tok.decode(generated);
  if (text.size() > printed) std::fwrite(text.data() + printed, 1, text.size() - printed, stdout);
  std::fputs("\n", stdout);
  std::fflush(stdout);
  std::fprintf(stderr, "[%zu prompt tokens in %.3f s; %zu new tokens, %.1f tok/s; stop: %s]\n", prompt_ids.size(),
               r.prompt_seconds, r.tokens.size(), r.decode_tokens_per_second(), r.stop_reason.c_str());
  return 0;
}

}  // namespace anvil::cli
