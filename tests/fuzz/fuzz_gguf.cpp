// GGUF: header, metadata key/values and tensor infos (GgufFile maps a path, so each input is
// written to a scratch file first); then what anvil derives from an accepted file: the model
// config (ModelConfig::from_gguf) and the tokenizer (tokenizer_json_from_gguf -> from_json).
#include <cstdint>

#include "fuzz_support.h"
#include "io/gguf.h"
#include "model/config.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto path = anvil::fuzz::scratch_dir() / "input.gguf";
  anvil::fuzz::write_file(path, anvil::fuzz::as_text(data, size));
  try {
    anvil::io::GgufFile f(path);
    ANVIL_FUZZ_CHECK(f.alignment() > 0 && (f.alignment() & (f.alignment() - 1)) == 0);
    unsigned sum = 0;
    for (const auto& t : f.tensors()) {
      ANVIL_FUZZ_CHECK(f.find_tensor(t.name) == &t);
      ANVIL_FUZZ_CHECK(t.data.size() == t.nbytes && t.nbytes <= size);
      ANVIL_FUZZ_CHECK(t.offset % f.alignment() == 0);
      auto ts = anvil::io::ggml_type_size(t.type);
      ANVIL_FUZZ_CHECK(ts && t.numel() / ts->block_elements * ts->block_bytes == t.nbytes);
      for (uint8_t b : t.data) sum += b;  // touches the view: out of the map is a SEGV
    }
    for (const auto& [k, v] : f.metadata()) {
      ANVIL_FUZZ_CHECK(f.find(k) != nullptr);
      (void)v.as_int();
      (void)v.as_float();
      if (const auto* a = v.as_array()) sum += static_cast<unsigned>(a->values.size());
    }
    asm volatile("" : : "r"(sum));
    try {
      (void)anvil::model::ModelConfig::from_gguf(f);
    } catch (const anvil::Error& e) {
      anvil::fuzz::rejected(e);
    }
    auto json = anvil::tokenizer::tokenizer_json_from_gguf(f);
    auto tok = anvil::tokenizer::Tokenizer::from_json(json, path.string());
    auto ids = tok.encode("Hello, world! naïve 123", true);
    (void)tok.decode(ids);
  } catch (const anvil::Error& e) {
    anvil::fuzz::rejected(e);
  }
  return 0;
}
