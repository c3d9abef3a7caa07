// anvil chat MODEL: a conversation on the terminal with the model's own chat template. Each line
// read is the user's turn; the reply streams as it is generated and joins the history, and the
// whole conversation is rendered again for the next turn. Works with piped stdin too (one user
// turn per line), which is how the tests drive it.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "chat_session.h"
#include "commands.h"
#include "common.h"
#include "model_options.h"

namespace anvil::cli {

int run_chat(int argc, char** argv) {
  cxxopts::Options options(argv[0], "Chat with MODEL on the terminal, using its chat template. Type a message and "
                                    "press Enter; an empty line or end of input (Ctrl-D) ends, /reset starts over.");
  options.positional_help("MODEL [--system TEXT]");
  options.add_options()
      ("model", "model directory or .gguf file", cxxopts::value<std::string>())
      ("system", "a system message that opens the conversation", cxxopts::value<std::string>())
      ("adapter", "apply a PEFT LoRA adapter directory to MODEL", cxxopts::value<std::string>())
      ("h,help", "show this help");
  add_sampling_options(options);
  add_runtime_options(options);
  options.parse_positional({"model"});
  auto parsed = parse_command(options, argc, argv, {{"model", "MODEL"}});
  if (!parsed) return 0;
  const cxxopts::ParseResult& args = *parsed;
  const auto model_path = existing_path(args["model"].as<std::string>(), "model directory or .gguf file");
  auto gen = generate_options(args);
  auto load = apply_runtime_options(args);
  const auto tok = load_tokenizer(model_path);
  const auto model = load_model(model_path, load, args.count("adapter") ? args["adapter"].as<std::string>() : "");
  tok.check_fits_model(model->config().vocab_size, model_path.string());
  ChatSession session(model_path, tok, *model, gen, args.count("ignore-eos") > 0);

  const nlohmann::json opening = args.count("system")
                                     ? nlohmann::json::array({{{"role", "system"}, {"content", args["system"].as<std::string>()}}})
                                     : nlohmann::json::array();
  nlohmann::json messages = opening;
  const bool interactive = isatty(STDIN_FILENO) && isatty(STDERR_FILENO);
  std::string line;
  for (;;) {
    if (interactive) std::fputs("\x1b[1m>\x1b[0m ", stderr), std::fflush(stderr);
    if (!std::getline(std::cin, line) || line.empty()) break;
    if (line == "/reset") {
      messages = opening;
      continue;
    }
    messages.push_back({{"role", "user"}, {"content", line}});
    eval::GenerateResult r;
    session.reply(messages, true, &r);
    std::fputs("\n", stdout);
    std::fflush(stdout);
    if (interactive)
      std::fprintf(stderr, "\x1b[2m[%zu tokens, %.1f tok/s, stop: %s]\x1b[0m\n", r.tokens.size(),
                   r.decode_tokens_per_second(), r.stop_reason.c_str());
  }
  return 0;
}

}  // namespace anvil::cli
