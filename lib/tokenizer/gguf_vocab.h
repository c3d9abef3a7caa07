#pragma once
// Byte-level BPE vocabularies in GGUF (tokenizer.ggml.*) <-> tokenizer.json. The pre-tokenizer
// is named, not stored, in GGUF: the names llama.cpp uses map to their Split regexes here.
#include <string>
#include <utility>
#include <vector>

#include "io/gguf.h"

namespace anvil::tokenizer {

class Tokenizer;

// A tokenizer.json equivalent to the GGUF's tokenizer.ggml.* metadata.
std::string tokenizer_json_from_gguf(const io::GgufFile& gguf);

// tokenizer.ggml.* entries for writing `tok` into a GGUF (model gpt2, tokens, token types, merges,
// pre-tokenizer name, special token ids).
std::vector<std::pair<std::string, io::GgufValue>> gguf_tokenizer_metadata(const Tokenizer& tok, int64_t bos_id,
                                                                           int64_t eos_id, int64_t pad_id,
                                                                           bool add_bos);

}  // namespace anvil::tokenizer
