#pragma once
// GGUF names a byte-level vocabulary's pre-tokenizer (tokenizer.ggml.pre) instead of storing it:
// one row per name llama.cpp knows, with the Split regexes of the tokenizer.json it stands for.
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace anvil::tokenizer {

struct GgufPreTokenizer {
  std::vector<std::string_view> names;    // the name anvil writes first, then llama.cpp's aliases
  std::vector<std::string_view> regexes;  // tokenizer.json's Split patterns, in order; none: GPT-2's
};

std::span<const GgufPreTokenizer> gguf_pre_tokenizers();
// The row for a tokenizer.json whose Split patterns are `patterns`, or nullptr.
const GgufPreTokenizer* gguf_pre_tokenizer_for(const std::vector<std::string>& patterns);
const GgufPreTokenizer* gguf_pre_tokenizer_named(std::string_view name);
// "llama-bpe, qwen2, ..." for messages.
std::string gguf_pre_tokenizer_names();

}  // namespace anvil::tokenizer
