#pragma once
// Reads tokenizer.json in one streaming pass. The vocabulary and merges (Gemma-3: 262k tokens,
// 515k merges, 14 MB) go straight into flat lists instead of a JSON tree, which would cost more
// than everything else about loading; the rest of the file (a few kB) becomes a JSON tree.
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace anvil::tokenizer {

struct TokenizerJson {
  nlohmann::json rest;  // the document, less model.vocab and model.merges when they were lists
  bool has_vocab = false, has_merges = false;
  std::vector<std::pair<std::string, int64_t>> vocab;        // in file order
  std::vector<std::pair<std::string, std::string>> merges;   // "a b" strings split at the first space
};

// Not JSON, nested too deep, a vocabulary id that is not an integer, or a merge that is not two
// tokens: an anvil::Error naming `where` (and the key).
TokenizerJson read_tokenizer_json(std::string_view text, const std::string& where);

}  // namespace anvil::tokenizer
