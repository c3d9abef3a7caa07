#pragma once
// Vocabularies in GGUF (tokenizer.ggml.*) <-> tokenizer.json, both kinds llama.cpp has:
// "gpt2" (byte-level BPE: tokens and merges, the pre-tokenizer named in tokenizer.ggml.pre) and
// "llama" (SentencePiece: pieces, scores, token types including the <0xXX> byte pieces, and the
// add_bos/add_eos/add_space_prefix flags), written as llama.cpp's converter writes them.
#include <string>
#include <utility>
#include <vector>

#include "io/gguf.h"

namespace anvil::tokenizer {

class Tokenizer;

// A tokenizer.json equivalent to the GGUF's tokenizer.ggml.* metadata: for "llama" vocabularies
// the one transformers' converter makes from the same SentencePiece model.
std::string tokenizer_json_from_gguf(const io::GgufFile& gguf);

// tokenizer.ggml.* entries for writing `tok` into a GGUF. A tokenizer llama.cpp cannot represent
// (a byte-level pre-tokenizer it has no name for, a BPE that is neither byte-level nor
// SentencePiece-style) is an anvil::Error naming the tokenizer's file. A vocabulary smaller than
// the model's embedding (Qwen's 151,665 tokens for 151,936 rows) is padded to `model_vocab_size` with
// llama.cpp's "[PAD<id>]" unused tokens, as its converter does: llama.cpp sizes token_embd by the
// token list.
std::vector<std::pair<std::string, io::GgufValue>> gguf_tokenizer_metadata(const Tokenizer& tok, int64_t bos_id,
                                                                           int64_t eos_id, int64_t pad_id,
                                                                           int64_t model_vocab_size = 0);

// What a GGUF of `tok` cannot say exactly, in a sentence for the user (empty when nothing):
// llama.cpp's "llama" vocabulary puts a space before the text and after every special token,
// where a Metaspace prepend_scheme "first" tokenizer puts one before the text only.
std::vector<std::string> gguf_vocabulary_caveats(const Tokenizer& tok);

}  // namespace anvil::tokenizer
