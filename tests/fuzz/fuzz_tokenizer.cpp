// tokenizer.json: Tokenizer::from_json(text, where), then an encode/decode round of a short
// mixed-script text with the result, which runs the normalizer, the added-token matcher, the
// pre-tokenizer's regexes, the byte-level mapping, BPE and the post-processor.
#include <cstdint>

#include "fuzz_support.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto tok = anvil::tokenizer::Tokenizer::from_json(std::string(anvil::fuzz::as_text(data, size)), "tokenizer.json");
    static const std::string_view kTexts[] = {
        "Hello, world! It's 2024: naïve café, Ünïcödé; 日本語 テキスト 123456 \t\n  x",
        "<|im_start|>user\nhi<|im_end|> <s></s>",
        "",
    };
    for (auto text : kTexts)
      for (bool special : {false, true}) {
        auto ids = tok.encode(text, special);
        const int32_t n = tok.vocab_size();
        for (int32_t id : ids) ANVIL_FUZZ_CHECK(id >= 0 && id < n);
        (void)tok.decode(ids, true);
        (void)tok.decode(ids, false);
      }
    const int32_t bogus[] = {-1, tok.vocab_size(), 0};
    (void)tok.decode(bogus, false);
    (void)tok.id_to_token(-1);
    (void)tok.id_to_token(tok.vocab_size());
    (void)tok.token_to_id("a");
    (void)tok.merges();
    (void)tok.split_patterns();
    (void)tok.adds_special_tokens();
    for (int32_t id = 0; id < std::min(tok.vocab_size(), 64); ++id) {
      (void)tok.is_special(id);
      (void)tok.is_added(id);
    }
  } catch (const anvil::Error& e) {
    anvil::fuzz::rejected(e);
  }
  return 0;
}
