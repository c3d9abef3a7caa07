#pragma once
// A Hugging Face tokenizer.json with a BPE model, byte-level (GPT-2, Llama-3, Qwen) or
// SentencePiece-style (Llama-2, Mistral, Gemma: U+2581 for spaces, byte fallback), giving the
// tokenizers library's ids. The stages live in their own files: added_tokens, normalizer,
// pre_tokenizer, bpe_model, post_processor, decoder.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace anvil::tokenizer {

class SentencePieceModel;

class Tokenizer {
 public:
  // `path` is a tokenizer.json, a tokenizer.model (SentencePiece), or a directory holding one
  // (tokenizer.json preferred, as transformers' fast tokenizers do).
  static Tokenizer load(const std::filesystem::path& path);
  static Tokenizer from_json(const std::string& json_text, const std::string& where);
  static Tokenizer from_sentencepiece(const std::filesystem::path& model_file);
  // The SentencePiece model behind a tokenizer.model, else nullptr.
  const SentencePieceModel* sentencepiece() const;
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // add_special_tokens applies the post-processor template (e.g. prepends BOS).
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false) const;
  // Reads and encodes a text file; a directory, an unreadable file or text that is not UTF-8 is
  // an anvil::Error naming the file.
  std::vector<int32_t> encode_file(const std::filesystem::path& file, bool add_special_tokens = false) const;
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = true) const;

  int32_t vocab_size() const;  // highest id + 1, added tokens included
  // The model's embedding has `model_vocab` rows: a tokenizer that can produce a higher id is an
  // anvil::Error naming the tokenizer's file (`model_where` names the model's side).
  void check_fits_model(int64_t model_vocab, const std::string& model_where) const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::string id_to_token(int32_t id) const;  // raw vocabulary string ("" if unknown)
  bool is_special(int32_t id) const;

  // For GGUF export: the BPE merges as "a b" strings in rank order, and whether each token is
  // an added token.
  std::vector<std::string> merges() const;
  std::vector<std::pair<int32_t, int32_t>> merge_ids() const;  // (left, right) ids in rank order
  bool is_added(int32_t id) const;
  // The pre-tokenizer's Split regexes in order (GPT-2's pattern excluded), for naming it in GGUF.
  std::vector<std::string> split_patterns() const;
  // Whether the post-processor adds special tokens (e.g. BOS) to a single sequence, and which
  // go before and after it.
  bool adds_special_tokens() const;
  std::vector<int32_t> special_prefix() const;
  std::vector<int32_t> special_suffix() const;
  bool byte_level() const;     // GPT-2's byte-to-character mapping (pre-tokenizer ByteLevel)
  bool byte_fallback() const;  // unknown characters become <0xXX> tokens (SentencePiece-style)
  int32_t unk_id() const;      // -1: none
  const std::string& where() const;  // the file it was read from
  // Metaspace with prepend_scheme "first" (U+2581 before the text only, not after added tokens).
  bool space_prefix_at_start_only() const;

 private:
  Tokenizer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace anvil::tokenizer
