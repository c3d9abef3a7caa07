#pragma once
// Generation as the torch commands share it: the sampling options, streaming decoded text to the
// terminal as tokens arrive, and one assistant turn of a conversation rendered with the model's
// own chat template (anvil chat, anvil generate --chat).
#include <cxxopts.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "eval/generate.h"
#include "tokenizer/tokenizer.h"

namespace anvil::model {
class Transformer;
}

namespace anvil::cli {

// --max-tokens, --temperature, --top-p, --top-k, --seed, --ignore-eos.
void add_sampling_options(cxxopts::Options& options);
eval::GenerateOptions generate_options(const cxxopts::ParseResult& args);

// Prints the text of tokens as they come, holding back an incomplete UTF-8 sequence.
class TextStream {
 public:
  explicit TextStream(const tokenizer::Tokenizer& tok) : tok_(tok) {}
  void push(int32_t token);
  // Prints what is left; returns the whole text.
  std::string finish();

 private:
  const tokenizer::Tokenizer& tok_;
  std::vector<int32_t> tokens_;
  size_t printed_ = 0;
};

class ChatSession {
 public:
  // The model's template (or a GGUF's); a model without one is an anvil::Error naming it.
  // Generation stops at the model's EOS ids, generation_config.json's and the template's
  // end-of-turn token, unless `ignore_eos`.
  ChatSession(const std::filesystem::path& model_path, const tokenizer::Tokenizer& tok, const model::Transformer& model,
              eval::GenerateOptions options, bool ignore_eos);

  // Renders `messages` with the generation prompt, generates the reply (streamed to stdout when
  // `stream`), appends it to `messages` as the assistant's and returns it.
  std::string reply(nlohmann::json& messages, bool stream, eval::GenerateResult* result = nullptr);
  const std::vector<int64_t>& stop_tokens() const { return options_.stop_tokens; }

 private:
  const tokenizer::Tokenizer& tok_;
  const model::Transformer& model_;
  std::optional<chat::ChatTemplate> template_;
  chat::RenderOptions render_;
  eval::GenerateOptions options_;
};

}  // namespace anvil::cli
