#pragma once
// Pieces every subcommand shares: option parsing conventions, runtime setup (threads, device),
// and loading a model the same way everywhere.
#include <cxxopts.hpp>
#include <filesystem>
#include <memory>
#include <string>

#include "model/transformer.h"
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

// Adds --threads, --device and --dtype.
void add_runtime_options(cxxopts::Options& options);
// Applies --threads to LibTorch and OpenBLAS; returns where and in what dtype to compute.
model::LoadOptions apply_runtime_options(const cxxopts::ParseResult& args);

// Parses argv, turning cxxopts' exceptions into UsageError; prints help and returns
// std::nullopt-like false when --help was given.
cxxopts::ParseResult parse_or_usage(cxxopts::Options& options, int argc, char** argv);
bool wants_help(const cxxopts::ParseResult& args, const cxxopts::Options& options);

std::filesystem::path existing_path(const std::string& path, const std::string& what);

// A model directory (safetensors) or a llama.cpp .gguf file.
// With `adapter_dir`, a PEFT LoRA adapter is merged into the weights as they load.
std::unique_ptr<model::Transformer> load_model(const std::filesystem::path& path, const model::LoadOptions& options,
                                               const std::string& adapter_dir = "");
tokenizer::Tokenizer load_tokenizer(const std::filesystem::path& model_path);

std::string human_bytes(double bytes);
std::string with_commas(int64_t n);

}  // namespace anvil::cli
