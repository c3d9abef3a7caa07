// anvil tokenize: the token ids (and pieces) a model's tokenizer gives a text, as the Hugging
// Face tokenizers library would; the peers' check (bench/interop.sh) compares them.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "io/atomic_file.h"

namespace anvil::cli {

int run_tokenize(int argc, char** argv) {
  cxxopts::Options options(argv[0], "Encode text with a model's tokenizer (tokenizer.json in a model directory, a "
                                    "tokenizer.json file, or a GGUF's vocabulary) and print the ids.");
  options.positional_help("TOKENIZER (--text TEXT | --file FILE)");
  options.add_options()
      ("tokenizer", "model directory, tokenizer.json or .gguf file", cxxopts::value<std::string>())
      ("text", "the text to encode", cxxopts::value<std::string>())
      ("file", "a UTF-8 text file to encode", cxxopts::value<std::string>())
      ("special", "apply the post-processor template (e.g. prepend BOS), as add_special_tokens=True")
      ("json", "print {\"ids\": [...], \"tokens\": [...], \"decoded\": \"...\"} instead of one id per line")
      ("h,help", "show this help");
  options.parse_positional({"tokenizer"});
  auto parsed = parse_command(options, argc, argv, {{"tokenizer", "TOKENIZER"}});
  if (!parsed) return 0;
  const cxxopts::ParseResult& args = *parsed;
  if (args.count("text") == args.count("file")) throw UsageError("give exactly one of --text and --file");
  const auto path = existing_path(args["tokenizer"].as<std::string>(), "tokenizer");
  const auto tok = load_tokenizer(path);
  const bool special = args.count("special") > 0;
  const std::vector<int32_t> ids =
      args.count("text") ? tok.encode(args["text"].as<std::string>(), special)
                         : tok.encode_file(existing_path(args["file"].as<std::string>(), "text file"), special);
  if (args.count("json")) {
    nlohmann::json out{{"ids", ids}, {"tokens", nlohmann::json::array()}, {"decoded", tok.decode(ids, false)}};
    for (int32_t id : ids) out["tokens"].push_back(tok.id_to_token(id));
    std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  }
  for (int32_t id : ids) std::printf("%d\n", id);
  return 0;
}

}  // namespace anvil::cli
