// anvil generate MODEL --prompt TEXT: streams the continuation to stdout as it is decoded. With
// --chat the prompt is one user turn, rendered with the model's chat template, and the reply is
// printed.
#include <cstdio>
#include <iostream>

#include "chat_session.h"
#include "commands.h"
#include "common.h"
#include "model_options.h"
#include "eval/generate.h"
#include "tokenizer/tokenizer.h"

namespace anvil::cli {

int run_generate(int argc, char** argv) {
  cxxopts::Options options(argv[0], "Continue a prompt with MODEL, streaming the text as it is generated. Greedy "
                                    "by default; --temperature > 0 samples (with --top-p, --top-k, --seed).");
  options.positional_help("MODEL --prompt TEXT");
  options.add_options()
      ("model", "model directory or .gguf file", cxxopts::value<std::string>())
      ("p,prompt", "prompt text", cxxopts::value<std::string>())
      ("chat", "the prompt is a user message: render it with the model's chat template and print the reply")
      ("system", "with --chat: a system message before the prompt", cxxopts::value<std::string>())
      ("no-bos", "do not add the tokenizer's special tokens (BOS) to the prompt")
      ("adapter", "apply a PEFT LoRA adapter directory to MODEL", cxxopts::value<std::string>())
      ("h,help", "show this help");
  add_sampling_options(options);
  add_runtime_options(options);
  options.parse_positional({"model"});
  auto parsed = parse_command(options, argc, argv, {{"model", "MODEL"}, {"prompt", "--prompt TEXT"}});
  if (!parsed) return 0;
  const cxxopts::ParseResult& args = *parsed;
  if (args.count("system") && !args.count("chat")) throw UsageError("--system needs --chat");
  auto opts = generate_options(args);
  auto model_dir = existing_path(args["model"].as<std::string>(), "model directory or .gguf file");
  auto load = apply_runtime_options(args);
  auto tok = load_tokenizer(model_dir);
  auto model = load_model(model_dir, load, args.count("adapter") ? args["adapter"].as<std::string>() : "");
  tok.check_fits_model(model->config().vocab_size, model_dir.string());
  const std::string prompt = args["prompt"].as<std::string>();

  if (args.count("chat")) {
    ChatSession session(model_dir, tok, *model, opts, args.count("ignore-eos") > 0);
    nlohmann::json messages = nlohmann::json::array();
    if (args.count("system")) messages.push_back({{"role", "system"}, {"content", args["system"].as<std::string>()}});
    messages.push_back({{"role", "user"}, {"content", prompt}});
    eval::GenerateResult r;
    session.reply(messages, true, &r);
    std::fputs("\n", stdout);
    std::fflush(stdout);
    std::fprintf(stderr, "[%zu new tokens, %.1f tok/s; stop: %s]\n", r.tokens.size(), r.decode_tokens_per_second(),
                 r.stop_reason.c_str());
    return 0;
  }

  auto prompt_ids = tok.encode(prompt, !args.count("no-bos"));
  if (!args.count("ignore-eos")) opts.stop_tokens = model->config().eos_token_ids;
  TextStream out(tok);
  std::fputs(prompt.c_str(), stdout);
  std::fflush(stdout);
  opts.on_token = [&](int32_t token) {
    out.push(token);
    return true;
  };
  auto r = eval::generate(*model, prompt_ids, opts);
  out.finish();
  std::fputs("\n", stdout);
  std::fflush(stdout);
  std::fprintf(stderr, "[%zu prompt tokens in %.3f s; %zu new tokens, %.1f tok/s; stop: %s]\n", prompt_ids.size(),
               r.prompt_seconds, r.tokens.size(), r.decode_tokens_per_second(), r.stop_reason.c_str());
  return 0;
}

}  // namespace anvil::cli
