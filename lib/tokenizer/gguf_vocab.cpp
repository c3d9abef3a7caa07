#include "tokenizer/gguf_vocab.h"

#include <array>
#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace anvil::tokenizer {
namespace {

struct PreTokenizer {
  const char* name;  // tokenizer.ggml.pre
  const char* regex; // nullptr: GPT-2's pattern via ByteLevel(use_regex)
};

constexpr std::array<PreTokenizer, 5> kPreTokenizers{{
    {"llama-bpe",
     R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
    {"qwen2",
     R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
    {"default", nullptr},
    {"gpt-2", nullptr},
    {"gpt2", nullptr},
}};

enum TokenType { kNormal = 1, kControl = 3, kUserDefined = 4 };

const io::GgufValue& need(const io::GgufFile& f, const char* key) {
  const io::GgufValue* v = f.find(key);
  if (!v) fail(f.path().string(), std::string("missing ") + key);
  return *v;
}

}  // namespace

std::string tokenizer_json_from_gguf(const io::GgufFile& f) {
  const std::string where = f.path().string();
  const std::string* model = need(f, "tokenizer.ggml.model").as_string();
  if (!model || *model != "gpt2") fail(where, "tokenizer model '" + (model ? *model : std::string("?")) + "' is not byte-level BPE (gpt2)");
  const auto* tokens = need(f, "tokenizer.ggml.tokens").as_array();
  const auto* merges = need(f, "tokenizer.ggml.merges").as_array();
  if (!tokens || !merges) fail(where, "tokenizer.ggml.tokens/merges must be arrays");
  const io::GgufArray* types = f.find("tokenizer.ggml.token_type") ? f.find("tokenizer.ggml.token_type")->as_array() : nullptr;
  std::string pre = "default";
  if (const auto* p = f.find("tokenizer.ggml.pre"); p && p->as_string()) pre = *p->as_string();
  const PreTokenizer* pt = nullptr;
  for (const auto& c : kPreTokenizers)
    if (pre == c.name) pt = &c;
  if (!pt) fail(where, "unsupported pre-tokenizer '" + pre + "' (supported: llama-bpe, qwen2, default)");

  nlohmann::ordered_json j;
  j["version"] = "1.0";
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  // A plain (sorted) object: ordered_json finds keys by a linear scan, quadratic over a vocabulary.
  nlohmann::json vocab = nlohmann::json::object();
  for (size_t i = 0; i < tokens->values.size(); ++i) {
    const std::string* tok = tokens->values[i].as_string();
    if (!tok) fail(where, "tokenizer.ggml.tokens holds a non-string");
    int64_t type = types && i < types->values.size() ? types->values[i].as_int().value_or(kNormal) : int64_t{kNormal};
    if (type == kControl || type == kUserDefined)
      added.push_back({{"id", i}, {"content", *tok}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                       {"normalized", false}, {"special", type == kControl}});
    vocab[*tok] = i;
  }
  j["added_tokens"] = added;
  j["normalizer"] = nullptr;
  nlohmann::ordered_json steps = nlohmann::ordered_json::array();
  if (pt->regex)
    steps.push_back({{"type", "Split"}, {"pattern", {{"Regex", pt->regex}}}, {"behavior", "Isolated"}, {"invert", false}});
  steps.push_back({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", pt->regex == nullptr}});
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", steps}};
  bool add_bos = false;
  if (const auto* v = f.find("tokenizer.ggml.add_bos_token")) add_bos = v->as_int().value_or(0) != 0;
  if (add_bos && f.find("tokenizer.ggml.bos_token_id")) {
    const std::optional<int64_t> bos_value = need(f, "tokenizer.ggml.bos_token_id").as_int();
    if (!bos_value) fail(where, "tokenizer.ggml.bos_token_id must be an integer");
    const int64_t bos = *bos_value;
    if (bos < 0 || bos >= static_cast<int64_t>(tokens->values.size())) fail(where, "bos_token_id out of range");
    const std::string& b = *tokens->values[static_cast<size_t>(bos)].as_string();
    j["post_processor"] = {{"type", "TemplateProcessing"},
                           {"single", {{{"SpecialToken", {{"id", b}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                           // The tokenizers library requires "pair" too (it refuses the file
                           // without it); Llama's: "<s> $A <s> $B", B with type id 1.
                           {"pair", {{{"SpecialToken", {{"id", b}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                     {{"SpecialToken", {{"id", b}, {"type_id", 1}}}}, {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
                           {"special_tokens", {{b, {{"id", b}, {"ids", {bos}}, {"tokens", {b}}}}}}};
  } else {
    j["post_processor"] = nullptr;
  }
  j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  nlohmann::ordered_json merge_list = nlohmann::ordered_json::array();
  for (const auto& m : merges->values) {
    if (!m.as_string()) fail(where, "tokenizer.ggml.merges holds a non-string");
    merge_list.push_back(*m.as_string());
  }
  j["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"byte_fallback", false},
                {"ignore_merges", false}, {"vocab", vocab}, {"merges", merge_list}};
  try {
    return j.dump();
  } catch (const nlohmann::json::type_error&) {  // 316: nlohmann checks UTF-8 as it serializes
    fail(where, "tokenizer.ggml.tokens or tokenizer.ggml.merges holds a string that is not valid UTF-8");
  }
}

std::vector<std::pair<std::string, io::GgufValue>> gguf_tokenizer_metadata(const Tokenizer& tok, int64_t bos_id,
                                                                           int64_t eos_id, int64_t pad_id,
                                                                           bool add_bos) {
  std::string pre;
  auto patterns = tok.split_patterns();
  for (const auto& c : kPreTokenizers)
    if ((c.regex && patterns.size() == 1 && patterns[0] == c.regex) || (!c.regex && patterns.empty() && pre.empty()))
      pre = c.name;
  if (pre.empty()) fail("tokenizer", "its pre-tokenizer regex matches none that llama.cpp names (llama-bpe, qwen2, gpt2)");
  std::vector<io::GgufValue> tokens, types, merges;
  for (int32_t i = 0; i < tok.vocab_size(); ++i) {
    tokens.push_back(io::GgufValue::str(tok.id_to_token(i)));
    types.push_back(io::GgufValue::i32(tok.is_special(i) ? kControl : tok.is_added(i) ? kUserDefined : kNormal));
  }
  for (const auto& m : tok.merges()) merges.push_back(io::GgufValue::str(m));
  std::vector<std::pair<std::string, io::GgufValue>> out{
      {"tokenizer.ggml.model", io::GgufValue::str("gpt2")},
      {"tokenizer.ggml.pre", io::GgufValue::str(pre)},
      {"tokenizer.ggml.tokens", io::GgufValue::array(io::GgufType::STRING, std::move(tokens))},
      {"tokenizer.ggml.token_type", io::GgufValue::array(io::GgufType::INT32, std::move(types))},
      {"tokenizer.ggml.merges", io::GgufValue::array(io::GgufType::STRING, std::move(merges))},
  };
  if (bos_id >= 0) out.emplace_back("tokenizer.ggml.bos_token_id", io::GgufValue::u32(static_cast<uint32_t>(bos_id)));
  if (eos_id >= 0) out.emplace_back("tokenizer.ggml.eos_token_id", io::GgufValue::u32(static_cast<uint32_t>(eos_id)));
  if (pad_id >= 0) out.emplace_back("tokenizer.ggml.padding_token_id", io::GgufValue::u32(static_cast<uint32_t>(pad_id)));
  out.emplace_back("tokenizer.ggml.add_bos_token", io::GgufValue::boolean(add_bos));
  return out;
}

}  // namespace anvil::tokenizer
