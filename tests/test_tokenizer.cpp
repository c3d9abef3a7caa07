// Tokenizers against the tokenizers library (refs/tokenizer_cases.json, the real tokenizers of
// refs/tokenizer_real_cases.json) and SentencePiece's own tools: identical ids (with and without
// special tokens) and identical decoded text, also through GGUF vocabularies.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/gguf.h"
#include "test_support.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

using namespace anvil;

TEST(Tokenizer, MatchesTokenizersLibraryOnEveryCase) {
  auto tok = tokenizer::Tokenizer::load(test::model_dir("base"));
  auto cases = nlohmann::json::parse(io::read_text_file(test::shared_dir() / "refs" / "tokenizer_cases.json"));
  ASSERT_GE(cases.size(), 10u);
  for (const auto& c : cases) {
    const std::string text = c["text"];
    SCOPED_TRACE(text.substr(0, 60));
    EXPECT_EQ(tok.encode(text, false), c["ids"].get<std::vector<int32_t>>());
    EXPECT_EQ(tok.encode(text, true), c["ids_with_bos"].get<std::vector<int32_t>>());
    auto ids = c["ids_with_bos"].get<std::vector<int32_t>>();
    EXPECT_EQ(tok.decode(ids), c["decoded"].get<std::string>());
  }
}

TEST(Tokenizer, SpecialTokensAndVocabulary) {
  auto tok = tokenizer::Tokenizer::load(test::model_dir("base"));
  EXPECT_EQ(tok.vocab_size(), 4096);
  EXPECT_EQ(tok.token_to_id("<|im_end|>"), 3);
  EXPECT_TRUE(tok.is_special(0));
  EXPECT_FALSE(tok.is_special(100));
  std::vector<int32_t> ids{2, 76, 77, 3};
  EXPECT_EQ(tok.decode(ids, /*skip_special_tokens=*/false), "<|im_start|>hi<|im_end|>");
}

TEST(Tokenizer, RejectsInvalidUtf8) {
  auto tok = tokenizer::Tokenizer::load(test::model_dir("base"));
  EXPECT_THROW(tok.encode("abc\xff\xfe", false), Error);
}

TEST(Tokenizer, RejectsUnsupportedOrBrokenFiles) {
  EXPECT_THROW(tokenizer::Tokenizer::from_json("{\"model\": ", "t.json"), Error);
  EXPECT_THROW(tokenizer::Tokenizer::from_json(R"({"model":{"type":"Unigram","vocab":[]}})", "t.json"), Error);
  try {
    tokenizer::Tokenizer::load(test::shared_dir() / "no-such-dir");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not found"), std::string::npos);
  }
}

// The real tokenizers of ../shared/tokenizers, SentencePiece-style (Mistral-7B, Gemma-3: U+2581,
// byte fallback, 6,406 added tokens) and byte-level (Llama-3, Qwen3): every one of the 200 texts
// per tokenizer gives the tokenizers library's ids, with and without special tokens, and decodes
// to its text.
TEST(Tokenizer, RealTokenizersGiveTheLibrarysIds) {
  const auto real = nlohmann::json::parse(test::read_bytes(test::shared_dir() / "refs" / "tokenizer_real_cases.json"));
  for (const char* name : {"mistral-7b", "gemma-3", "llama-3", "qwen3"}) {
    const auto tok = tokenizer::Tokenizer::load(test::shared_dir() / "tokenizers" / name);
    const auto& cases = real["tokenizers"][name];
    ASSERT_EQ(cases.size(), 200u) << name;
    int exact = 0;
    for (const auto& c : cases) {
      const std::string text = c["text"].get<std::string>();
      const auto ids = tok.encode(text, false);
      const auto with_special = tok.encode(text, true);
      EXPECT_EQ(nlohmann::json(ids), c["ids"]) << name << ": " << text;
      EXPECT_EQ(nlohmann::json(with_special), c["ids_with_special"]) << name << ": " << text;
      EXPECT_EQ(tok.decode(ids), c["decoded"].get<std::string>()) << name << ": " << text;
      exact += nlohmann::json(ids) == c["ids"];
    }
    EXPECT_EQ(exact, 200) << name;
  }
}

// tokenizer.model through libsentencepiece: two small models made by Debian's spm_train (BPE with
// byte fallback and NFKC rules, Unigram without rules; tests/data/sentencepiece/make.sh) give
// spm_encode's ids and spm_decode's text on every case, and BOS with special tokens.
TEST(Tokenizer, SentencePieceModelsGiveSpmEncodesIds) {
  const auto dir = test::data_dir() / "sentencepiece";
  const auto cases = nlohmann::json::parse(test::read_bytes(dir / "cases.json"));
  for (const char* name : {"tiny_bpe.model", "tiny_unigram.model"}) {
    const auto tok = tokenizer::Tokenizer::load(dir / name);
    ASSERT_NE(tok.sentencepiece(), nullptr);
    ASSERT_GE(cases["models"][name].size(), 30u);
    for (const auto& c : cases["models"][name]) {
      const std::string text = c["text"];
      SCOPED_TRACE(std::string(name) + ": " + text);
      const auto ids = c["ids"].get<std::vector<int32_t>>();
      EXPECT_EQ(tok.encode(text, false), ids);
      auto with_bos = ids;
      with_bos.insert(with_bos.begin(), 1);  // spm_train's default bos_id
      EXPECT_EQ(tok.encode(text, true), with_bos);
      EXPECT_EQ(tok.decode(ids), c["decoded"].get<std::string>());
    }
    EXPECT_EQ(tok.token_to_id("<s>"), 1);
    EXPECT_TRUE(tok.is_special(1));
    EXPECT_EQ(tok.token_to_id("no-such-piece"), std::nullopt);
  }
  // Not a SentencePiece model: one named error.
  test::TempDir tmp;
  test::write_bytes(tmp / "tokenizer.model", "definitely not a protobuf");
  EXPECT_THROW(tokenizer::Tokenizer::load(tmp.path()), Error);
}

// GGUF vocabularies both ways: each real tokenizer written into a GGUF (SentencePiece-style as
// "llama" with pieces, scores and token types; byte-level as "gpt2" with the pre-tokenizer's
// llama.cpp name) and read back tokenizes the 200 texts exactly as the tokenizers library did.
// Each is written for a model with 7 more embedding rows than tokens (as Qwen's 151,936 rows for
// 151,665 tokens): padded with llama.cpp's converter's "[PAD<id>]" unused tokens (score -10000).
TEST(Tokenizer, GgufVocabulariesKeepTheLibrarysIds) {
  const auto real = nlohmann::json::parse(test::read_bytes(test::shared_dir() / "refs" / "tokenizer_real_cases.json"));
  const std::map<std::string, std::pair<std::string, std::string>> expected{
      {"mistral-7b", {"llama", ""}}, {"gemma-3", {"llama", ""}}, {"llama-3", {"gpt2", "llama-bpe"}}, {"qwen3", {"gpt2", "qwen2"}}};
  for (const auto& [name, kind] : expected) {
    SCOPED_TRACE(name);
    const auto original = tokenizer::Tokenizer::load(test::shared_dir() / "tokenizers" / name);
    test::TempDir dir;
    auto meta = tokenizer::gguf_tokenizer_metadata(original, -1, -1, -1, original.vocab_size() + 7);
    meta.insert(meta.begin(), {"general.architecture", io::GgufValue::str("llama")});
    {
      io::GgufWriter w(dir / "vocab.gguf", meta, {});
      w.commit();
    }
    io::GgufFile gguf(dir / "vocab.gguf");
    EXPECT_EQ(*gguf.find("tokenizer.ggml.model")->as_string(), kind.first);
    if (!kind.second.empty()) {
      EXPECT_EQ(*gguf.find("tokenizer.ggml.pre")->as_string(), kind.second);
    }
    const auto tok = tokenizer::Tokenizer::from_json(tokenizer::tokenizer_json_from_gguf(gguf), "vocab.gguf");
    EXPECT_EQ(tok.vocab_size(), original.vocab_size() + 7);
    const int32_t last = original.vocab_size() + 6;
    EXPECT_EQ(*gguf.find("tokenizer.ggml.tokens")->as_array()->values.back().as_string(), "[PAD" + std::to_string(last) + "]");
    EXPECT_EQ(*gguf.find("tokenizer.ggml.token_type")->as_array()->values.back().as_int(), 5);  // unused
    if (const auto* scores = gguf.find("tokenizer.ggml.scores")) {
      EXPECT_EQ(*scores->as_array()->values.back().as_float(), -10000.0);
    }
    int exact = 0;
    for (const auto& c : real["tokenizers"][name]) {
      const std::string text = c["text"];
      const auto ids = tok.encode(text, false);
      EXPECT_EQ(nlohmann::json(ids), c["ids"]) << text;
      EXPECT_EQ(nlohmann::json(tok.encode(text, true)), c["ids_with_special"]) << text;
      EXPECT_EQ(tok.decode(ids), c["decoded"].get<std::string>()) << text;
      exact += nlohmann::json(ids) == c["ids"];
    }
    EXPECT_EQ(exact, 200);
  }
}
