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
  if (!std::filesystem::is_directory(model_path))
    fail(model_path.string(), "is neither a GGUF file (its magic is not GGUF) nor a model directory");
  return tokenizer::Tokenizer::load(model_path);
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
