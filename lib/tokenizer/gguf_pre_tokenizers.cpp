#include "tokenizer/gguf_pre_tokenizers.h"

#include <algorithm>

namespace anvil::tokenizer {
namespace {

// The patterns as the models' tokenizer.json files spell them (llama.cpp keeps them, or an
// adaptation for its own regex engine, in llama-vocab.cpp; its converter picks the name by
// tokenizing a probe text, so the name is the family's, not the regex's).
const std::vector<GgufPreTokenizer>& table() {
  static const std::vector<GgufPreTokenizer> rows{
      {{"gpt-2", "gpt2", "default", "phi-2", "roberta-bpe"}, {}},
      {{"llama-bpe", "llama3", "llama-v3", "falcon3", "pixtral", "dbrx", "smaug-bpe"},
       {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}},
      {{"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"},
       {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}},
      {{"qwen35"},
       {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}},
      {{"deepseek-v3"},
       {R"(\p{N}{1,3})", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
        "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
        "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}},
      {{"gpt-4o", "llama4"},
       {R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}},
      {{"tekken"},
       {R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}},
  };
  return rows;
}

}  // namespace

std::span<const GgufPreTokenizer> gguf_pre_tokenizers() { return table(); }

const GgufPreTokenizer* gguf_pre_tokenizer_for(const std::vector<std::string>& patterns) {
  for (const auto& row : table())
    if (std::equal(row.regexes.begin(), row.regexes.end(), patterns.begin(), patterns.end())) return &row;
  return nullptr;
}

const GgufPreTokenizer* gguf_pre_tokenizer_named(std::string_view name) {
  for (const auto& row : table())
    if (std::find(row.names.begin(), row.names.end(), name) != row.names.end()) return &row;
  return nullptr;
}

std::string gguf_pre_tokenizer_names() {
  std::string out;
  for (const auto& row : table()) out += (out.empty() ? "" : ", ") + std::string(row.names[0]);
  return out;
}

}  // namespace anvil::tokenizer
