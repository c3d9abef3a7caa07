#pragma once
// tokenizer.model (a SentencePiece model protobuf), for models that ship no tokenizer.json:
// encoded and decoded by libsentencepiece, the reference implementation, so that no hand-written
// reading of the protobuf or of SentencePiece's algorithms can drift from it.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace anvil::tokenizer {

class SentencePieceModel {
 public:
  // A file that is not a SentencePiece model is an anvil::Error naming it.
  static std::unique_ptr<SentencePieceModel> load(const std::filesystem::path& file);
  ~SentencePieceModel();

  std::vector<int32_t> encode(std::string_view text) const;
  std::string decode(std::span<const int32_t> ids, bool skip_control) const;

  int32_t size() const;
  std::string piece(int32_t id) const;
  float score(int32_t id) const;
  int32_t piece_to_id(std::string_view piece) const;  // -1 if absent
  bool is_control(int32_t id) const;
  bool is_unknown(int32_t id) const;
  bool is_byte(int32_t id) const;
  bool is_unused(int32_t id) const;
  int32_t bos_id() const;  // -1: none
  int32_t eos_id() const;
  int32_t unk_id() const;
  // Whether encoding prepends U+2581 (the model's add_dummy_prefix), seen from its output.
  bool adds_dummy_prefix() const;
  const std::string& where() const { return where_; }

 private:
  SentencePieceModel();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string where_;
};

}  // namespace anvil::tokenizer
