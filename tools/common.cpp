#include "common.h"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <thread>

#include "model/gguf_tensors.h"
#include "tokenizer/gguf_vocab.h"

namespace anvil::cli {

int thread_count(const cxxopts::ParseResult& args) {
  if (!args.count("threads")) return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int threads = args["threads"].as<int>();
  if (threads < 1) throw UsageError("--threads must be at least 1");
  return threads;
}

std::optional<cxxopts::ParseResult> parse_command(cxxopts::Options& options, int argc, char** argv,
                                                  std::initializer_list<Required> required) {
  std::optional<cxxopts::ParseResult> args;
  try {
    args = options.parse(argc, argv);
  } catch (const cxxopts::exceptions::incorrect_argument_type& e) {
    // cxxopts names the value, not the option: find the option it was given to.
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      const auto eq = a.find('=');
      std::string option, value;
      if (a.rfind("-", 0) == 0 && eq != std::string::npos) option = a.substr(0, eq), value = a.substr(eq + 1);
      else if (a.rfind("-", 0) == 0 && i + 1 < argc) option = a, value = argv[i + 1];
      if (!option.empty() && std::string(e.what()).find(cxxopts::LQUOTE + value + cxxopts::RQUOTE) != std::string::npos)
        throw UsageError(option + ": '" + value + "' is not a valid value for it");
    }
    throw UsageError(e.what());
  } catch (const cxxopts::exceptions::exception& e) {
    throw UsageError(e.what());
  }
  if (args->count("help")) {
    std::cout << options.help() << std::flush;
    return std::nullopt;
  }
  for (const auto& r : required)
    if (!args->count(r.option)) throw UsageError(std::string("missing ") + r.shown);
  return args;
}

std::filesystem::path existing_path(const std::string& path, const std::string& what) {
  if (path.empty()) throw UsageError("missing " + what);
  if (!std::filesystem::exists(path)) fail(path, what + " not found");
  return path;
}

tokenizer::Tokenizer load_tokenizer(const std::filesystem::path& model_path) {
  if (model::is_gguf_file(model_path)) {
    io::GgufFile gguf(model_path);
    return tokenizer::Tokenizer::from_json(tokenizer::tokenizer_json_from_gguf(gguf), model_path.string());
  }
  const auto ext = model_path.extension();
  if (!std::filesystem::is_directory(model_path) && ext != ".json" && ext != ".model")
    fail(model_path.string(), "is neither a GGUF file (its magic is not GGUF), a tokenizer.json, a tokenizer.model nor a "
                              "model directory");
  return tokenizer::Tokenizer::load(model_path);
}

std::optional<chat::ModelChatTemplate> load_chat_template(const std::filesystem::path& model_path,
                                                          const tokenizer::Tokenizer& tok) {
  if (model::is_gguf_file(model_path)) {
    io::GgufFile gguf(model_path);
    const io::GgufValue* t = gguf.find("tokenizer.chat_template");
    if (!t) return std::nullopt;
    if (!t->as_string()) fail(model_path.string(), "tokenizer.chat_template must be a string");
    chat::ModelChatTemplate out{*t->as_string(), model_path.string() + ": tokenizer.chat_template", "", ""};
    auto token_of = [&](const char* key) -> std::string {
      const io::GgufValue* v = gguf.find(key);
      const auto id = v ? v->as_int() : std::nullopt;
      return id ? tok.id_to_token(static_cast<int32_t>(*id)) : "";
    };
    out.bos_token = token_of("tokenizer.ggml.bos_token_id");
    out.eos_token = token_of("tokenizer.ggml.eos_token_id");
    return out;
  }
  const auto dir = std::filesystem::is_directory(model_path) ? model_path : model_path.parent_path();
  return chat::find_chat_template(dir);
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) {
    b /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

std::string with_commas(int64_t n) {
  std::string s = std::to_string(n < 0 ? -n : n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return n < 0 ? "-" + s : s;
}

}  // namespace anvil::cli
