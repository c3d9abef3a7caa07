#pragma once
// tokenizer.json's "decoder": turns the tokens of a sequence of ids back into text (ByteLevel,
// Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence), as the tokenizers library does.
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace anvil::tokenizer {

class Decoder {
 public:
  // `spec` is the "decoder" value; null joins tokens with spaces, as the library does.
  static Decoder parse(const nlohmann::json& spec, const std::string& where);
  Decoder();
  ~Decoder();
  Decoder(Decoder&&) noexcept;
  Decoder& operator=(Decoder&&) noexcept;

  std::string decode(std::vector<std::string> tokens) const;

 private:
  struct Step;
  std::vector<std::unique_ptr<Step>> steps_;
};

}  // namespace anvil::tokenizer
