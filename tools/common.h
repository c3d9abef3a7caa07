#pragma once
// Pieces every subcommand shares: option parsing conventions, paths, number formatting. No
// LibTorch here: the light front end links it (model loading is in model_options.h).
#include <cxxopts.hpp>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>

#include "chat/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace anvil::cli {

// Bad command-line usage: reported as one line, exit status 2.
class UsageError : public Error {
 public:
  using Error::Error;
};

// --threads, or all cores when absent; a UsageError below 1.
int thread_count(const cxxopts::ParseResult& args);

// An option a command cannot run without, and how the "missing ..." error names it.
struct Required {
  const char* option;
  const char* shown;
};

// Parses argv, turning cxxopts' exceptions into UsageError; prints the help and returns nothing
// for --help; a UsageError "missing SHOWN" for the first required option absent.
std::optional<cxxopts::ParseResult> parse_command(cxxopts::Options& options, int argc, char** argv,
                                                  std::initializer_list<Required> required = {});

std::filesystem::path existing_path(const std::string& path, const std::string& what);

// A model directory, a tokenizer.json, a tokenizer.model or a .gguf.
tokenizer::Tokenizer load_tokenizer(const std::filesystem::path& model_path);

// The chat template of a model directory (chat_template.jinja / tokenizer_config.json) or a
// GGUF (tokenizer.chat_template, BOS/EOS from its token ids); nullopt when it has none.
std::optional<chat::ModelChatTemplate> load_chat_template(const std::filesystem::path& model_path,
                                                          const tokenizer::Tokenizer& tok);

std::string human_bytes(double bytes);
std::string with_commas(int64_t n);

}  // namespace anvil::cli
