#include "tokenizer/gguf_vocab.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <regex>
#include <unordered_map>
#include <unordered_set>

#include "tokenizer/gguf_pre_tokenizers.h"
#include "tokenizer/sentencepiece_model.h"
#include "tokenizer/spm_merges.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace anvil::tokenizer {
namespace {

using ordered_json = nlohmann::ordered_json;

// llama.cpp's token types (gguf-py's TokenType).
enum TokenType { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

// Bounds a stranger's GGUF vocabulary before tables are sized by it.
constexpr size_t kMaxTokens = 10'000'000;

const char* const kMetaspace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

const io::GgufValue& need(const io::GgufFile& f, const char* key) {
  const io::GgufValue* v = f.find(key);
  if (!v) fail(f.path().string(), std::string("missing ") + key);
  return *v;
}

bool is_byte_piece(const std::string& t) {
  static const std::regex byte_piece("<0x[0-9A-Fa-f]{2}>");
  return t.size() == 6 && std::regex_match(t, byte_piece);
}

struct GgufVocab {
  std::vector<std::string> tokens;
  std::vector<int64_t> types;
  std::vector<float> scores;
};

GgufVocab read_vocab(const io::GgufFile& f, bool need_scores) {
  const std::string where = f.path().string();
  GgufVocab v;
  const io::GgufArray* tokens = need(f, "tokenizer.ggml.tokens").as_array();
  if (!tokens || tokens->type != io::GgufType::STRING) fail(where, "tokenizer.ggml.tokens must be an array of strings");
  if (tokens->values.empty() || tokens->values.size() > kMaxTokens)
    fail(where, "tokenizer.ggml.tokens holds " + std::to_string(tokens->values.size()) + " tokens");
  for (const auto& t : tokens->values) v.tokens.push_back(*t.as_string());
  v.types.assign(v.tokens.size(), kNormal);
  if (const io::GgufValue* tv = f.find("tokenizer.ggml.token_type")) {
    const io::GgufArray* types = tv->as_array();
    if (!types || types->values.size() != v.tokens.size())
      fail(where, "tokenizer.ggml.token_type must be an integer array as long as tokenizer.ggml.tokens");
    for (size_t i = 0; i < v.types.size(); ++i) {
      const auto t = types->values[i].as_int();
      if (!t || *t < 0 || *t > kByte) fail(where, "tokenizer.ggml.token_type[" + std::to_string(i) + "] is not a token type (0-6)");
      v.types[i] = *t;
    }
  }
  // Each token once (a repeated one would leave an id no text maps to), and a byte type only on
  // a <0xXX> piece (llama.cpp reads such a piece as its byte).
  {
    std::unordered_map<std::string_view, size_t> first;
    first.reserve(v.tokens.size());
    for (size_t i = 0; i < v.tokens.size(); ++i) {
      if (auto [it, fresh] = first.emplace(v.tokens[i], i); !fresh)
        fail(where, "tokenizer.ggml.tokens[" + std::to_string(i) + "] repeats token " + std::to_string(it->second));
      if (v.types[i] == kByte && !is_byte_piece(v.tokens[i]))
        fail(where, "tokenizer.ggml.tokens[" + std::to_string(i) + "] has token_type 6 (byte) but is not a <0xXX> piece");
    }
  }
  v.scores.assign(v.tokens.size(), 0.0f);
  if (const io::GgufValue* sv = f.find("tokenizer.ggml.scores")) {
    const io::GgufArray* scores = sv->as_array();
    if (!scores || scores->values.size() != v.tokens.size())
      fail(where, "tokenizer.ggml.scores must be a float array as long as tokenizer.ggml.tokens");
    for (size_t i = 0; i < v.scores.size(); ++i) {
      const auto s = scores->values[i].as_float();
      if (!s || !std::isfinite(*s)) fail(where, "tokenizer.ggml.scores[" + std::to_string(i) + "] is not a finite number");
      v.scores[i] = static_cast<float>(*s);
    }
  } else if (need_scores) {
    fail(where, "missing tokenizer.ggml.scores (a SentencePiece vocabulary needs them for its merges)");
  }
  return v;
}

bool flag(const io::GgufFile& f, const char* key, bool fallback) {
  const io::GgufValue* v = f.find(key);
  if (!v) return fallback;
  const auto i = v->as_int();
  if (!i) fail(f.path().string(), std::string(key) + " must be a boolean");
  return *i != 0;
}

int64_t token_id(const io::GgufFile& f, const char* key, int64_t fallback, size_t vocab) {
  const io::GgufValue* v = f.find(key);
  if (!v) return fallback;
  const auto i = v->as_int();
  if (!i || *i < 0 || static_cast<size_t>(*i) >= vocab)
    fail(f.path().string(), std::string(key) + " is not a token id of the vocabulary (0.." + std::to_string(vocab - 1) + ")");
  return *i;
}

ordered_json added_token(size_t id, const std::string& content, bool special) {
  return {{"id", id},          {"content", content}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false},   {"normalized", false}, {"special", special}};
}

ordered_json template_processing(const std::vector<std::pair<std::string, int64_t>>& before,
                                 const std::vector<std::pair<std::string, int64_t>>& after) {
  ordered_json single = ordered_json::array(), pair = ordered_json::array(), specials = ordered_json::object();
  auto special = [&](const std::pair<std::string, int64_t>& t, int type_id) {
    specials[t.first] = {{"id", t.first}, {"ids", {t.second}}, {"tokens", {t.first}}};
    return ordered_json{{"SpecialToken", {{"id", t.first}, {"type_id", type_id}}}};
  };
  // The tokenizers library requires "pair" too; Llama's is "<s> $A <s> $B", B with type id 1.
  for (const auto& t : before) single.push_back(special(t, 0));
  single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
  for (const auto& t : after) single.push_back(special(t, 0));
  for (const auto& t : before) pair.push_back(special(t, 0));
  pair.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
  for (const auto& t : after) pair.push_back(special(t, 0));
  for (const auto& t : before) pair.push_back(special(t, 1));
  pair.push_back({{"Sequence", {{"id", "B"}, {"type_id", 1}}}});
  for (const auto& t : after) pair.push_back(special(t, 1));
  return {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}};
}

std::string dump(const ordered_json& j, const std::string& where) {
  try {
    return j.dump();
  } catch (const nlohmann::json::type_error&) {  // 316: nlohmann checks UTF-8 as it serializes
    fail(where, "tokenizer.ggml.tokens or tokenizer.ggml.merges holds a string that is not valid UTF-8");
  }
}

// A plain (sorted) object: ordered_json finds keys by a linear scan, quadratic over a vocabulary.
nlohmann::json vocab_object(const std::vector<std::string>& tokens) {
  nlohmann::json vocab = nlohmann::json::object();
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;  // a repeated piece keeps its last id
  return vocab;
}

std::string byte_level_json(const io::GgufFile& f, const GgufVocab& v) {
  const std::string where = f.path().string();
  const io::GgufArray* merges = need(f, "tokenizer.ggml.merges").as_array();
  if (!merges || merges->type != io::GgufType::STRING) fail(where, "tokenizer.ggml.merges must be an array of strings");
  std::string pre = "default";
  if (const auto* p = f.find("tokenizer.ggml.pre")) {
    if (!p->as_string()) fail(where, "tokenizer.ggml.pre must be a string");
    pre = *p->as_string();
  }
  const GgufPreTokenizer* pt = gguf_pre_tokenizer_named(pre);
  if (!pt) fail(where, "tokenizer.ggml.pre: unsupported pre-tokenizer '" + pre + "' (supported: " + gguf_pre_tokenizer_names() + ")");

  ordered_json j;
  j["version"] = "1.0";
  ordered_json added = ordered_json::array();
  for (size_t i = 0; i < v.tokens.size(); ++i)
    if (v.types[i] == kControl || v.types[i] == kUserDefined) added.push_back(added_token(i, v.tokens[i], v.types[i] == kControl));
  j["added_tokens"] = added;
  j["normalizer"] = nullptr;
  ordered_json steps = ordered_json::array();
  for (std::string_view re : pt->regexes)
    steps.push_back({{"type", "Split"}, {"pattern", {{"Regex", re}}}, {"behavior", "Isolated"}, {"invert", false}});
  steps.push_back({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", pt->regexes.empty()}});
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", steps}};
  std::vector<std::pair<std::string, int64_t>> before, after;
  if (flag(f, "tokenizer.ggml.add_bos_token", false) && f.find("tokenizer.ggml.bos_token_id")) {
    const int64_t bos = token_id(f, "tokenizer.ggml.bos_token_id", -1, v.tokens.size());
    before.emplace_back(v.tokens[static_cast<size_t>(bos)], bos);
  }
  if (flag(f, "tokenizer.ggml.add_eos_token", false) && f.find("tokenizer.ggml.eos_token_id")) {
    const int64_t eos = token_id(f, "tokenizer.ggml.eos_token_id", -1, v.tokens.size());
    after.emplace_back(v.tokens[static_cast<size_t>(eos)], eos);
  }
  j["post_processor"] = before.empty() && after.empty() ? ordered_json(nullptr) : template_processing(before, after);
  j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  // The merges are checked here, against the GGUF's own keys, so that an error names them.
  std::unordered_set<std::string_view> known(v.tokens.begin(), v.tokens.end());
  ordered_json merge_list = ordered_json::array();
  std::string joined;
  for (size_t i = 0; i < merges->values.size(); ++i) {
    const std::string& m = *merges->values[i].as_string();
    const size_t space = m.find(' ', 1);
    const std::string key = "tokenizer.ggml.merges[" + std::to_string(i) + "]";
    if (space == std::string::npos) fail(where, key + ": '" + m + "' is not two tokens");
    joined.assign(m, 0, space).append(m, space + 1);
    if (!known.count(std::string_view(m).substr(0, space)) || !known.count(std::string_view(m).substr(space + 1)) ||
        !known.count(joined))
      fail(where, key + ": '" + m + "' uses tokens missing from tokenizer.ggml.tokens");
    merge_list.push_back(m);
  }
  j["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"byte_fallback", false},
                {"ignore_merges", false}, {"vocab", vocab_object(v.tokens)}, {"merges", merge_list}};
  return dump(j, where);
}

// As transformers' LlamaConverter writes a SentencePiece BPE model: spaces become U+2581 (and one
// is prepended when add_space_prefix), characters outside the vocabulary fall back to bytes.
std::string sentencepiece_json(const io::GgufFile& f, const GgufVocab& v) {
  const std::string where = f.path().string();
  const bool add_space_prefix = flag(f, "tokenizer.ggml.add_space_prefix", true);
  const int64_t unk = token_id(f, "tokenizer.ggml.unknown_token_id", -1, v.tokens.size());
  ordered_json j;
  j["version"] = "1.0";
  ordered_json added = ordered_json::array();
  for (size_t i = 0; i < v.tokens.size(); ++i)
    if (v.types[i] == kControl || v.types[i] == kUnknown || v.types[i] == kUserDefined)
      added.push_back(added_token(i, v.tokens[i], v.types[i] != kUserDefined));
  j["added_tokens"] = added;
  ordered_json replace = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kMetaspace}};
  j["normalizer"] = add_space_prefix
                        ? ordered_json{{"type", "Sequence"},
                                       {"normalizers", {{{"type", "Prepend"}, {"prepend", kMetaspace}}, replace}}}
                        : replace;
  j["pre_tokenizer"] = nullptr;
  std::vector<std::pair<std::string, int64_t>> before, after;
  if (flag(f, "tokenizer.ggml.add_bos_token", true)) {
    const int64_t bos = token_id(f, "tokenizer.ggml.bos_token_id", 1, v.tokens.size());
    before.emplace_back(v.tokens[static_cast<size_t>(bos)], bos);
  }
  if (flag(f, "tokenizer.ggml.add_eos_token", false)) {
    const int64_t eos = token_id(f, "tokenizer.ggml.eos_token_id", 2, v.tokens.size());
    after.emplace_back(v.tokens[static_cast<size_t>(eos)], eos);
  }
  j["post_processor"] = before.empty() && after.empty() ? ordered_json(nullptr) : template_processing(before, after);
  ordered_json decoders = ordered_json::array();
  decoders.push_back({{"type", "Replace"}, {"pattern", {{"String", kMetaspace}}}, {"content", " "}});
  decoders.push_back({{"type", "ByteFallback"}});
  decoders.push_back({{"type", "Fuse"}});
  if (add_space_prefix) decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  j["decoder"] = {{"type", "Sequence"}, {"decoders", decoders}};
  ordered_json merge_list = ordered_json::array();
  for (auto& [l, r] : merges_from_scores(v.tokens, v.scores)) merge_list.push_back({std::move(l), std::move(r)});
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", unk >= 0 ? ordered_json(v.tokens[static_cast<size_t>(unk)]) : ordered_json(nullptr)},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", true},
                {"byte_fallback", true},
                {"vocab", vocab_object(v.tokens)},
                {"merges", merge_list}};
  return dump(j, where);
}

}  // namespace

std::string tokenizer_json_from_gguf(const io::GgufFile& f) {
  const std::string where = f.path().string();
  const std::string* model = need(f, "tokenizer.ggml.model").as_string();
  if (!model) fail(where, "tokenizer.ggml.model must be a string");
  if (*model == "gpt2") return byte_level_json(f, read_vocab(f, false));
  if (*model == "llama") return sentencepiece_json(f, read_vocab(f, true));
  fail(where, "tokenizer.ggml.model: unsupported vocabulary type '" + *model + "' (supported: gpt2, llama)");
}

std::vector<std::string> gguf_vocabulary_caveats(const Tokenizer& tok) {
  if (tok.byte_fallback() && !tok.byte_level() && tok.space_prefix_at_start_only())
    return {tok.where() + ": Metaspace prepend_scheme \"first\" has no GGUF form: llama.cpp will also put a space "
            "after special tokens and before a text that begins with one, so such texts tokenize differently there "
            "(anvil reading the GGUF agrees with llama.cpp)"};
  return {};
}

std::vector<std::pair<std::string, io::GgufValue>> gguf_tokenizer_metadata(const Tokenizer& tok, int64_t bos_id,
                                                                           int64_t eos_id, int64_t pad_id,
                                                                           int64_t model_vocab_size) {
  std::vector<io::GgufValue> tokens, types, scores, merges;
  std::vector<std::pair<std::string, io::GgufValue>> out;
  const auto prefix = tok.special_prefix(), suffix = tok.special_suffix();
  const bool add_bos = !prefix.empty(), add_eos = !suffix.empty();
  if (add_bos) bos_id = prefix[0];
  if (add_eos) eos_id = suffix[0];
  if (const SentencePieceModel* sp = tok.sentencepiece()) {
    // tokenizer.model: its own pieces, scores and types, as llama.cpp's converter copies them.
    for (int32_t i = 0; i < sp->size(); ++i) {
      tokens.push_back(io::GgufValue::str(sp->piece(i)));
      scores.push_back(io::GgufValue::f32(sp->score(i)));
      types.push_back(io::GgufValue::i32(sp->is_unknown(i) ? kUnknown : sp->is_control(i) ? kControl
                                         : sp->is_byte(i)  ? kByte    : sp->is_unused(i)  ? kUnused : kNormal));
    }
    out.emplace_back("tokenizer.ggml.model", io::GgufValue::str("llama"));
    out.emplace_back("tokenizer.ggml.add_space_prefix", io::GgufValue::boolean(sp->adds_dummy_prefix()));
    if (sp->unk_id() >= 0) out.emplace_back("tokenizer.ggml.unknown_token_id", io::GgufValue::u32(static_cast<uint32_t>(sp->unk_id())));
  } else if (tok.byte_fallback() && !tok.byte_level()) {
    // SentencePiece-style tokenizer.json: llama.cpp merges the adjacent pair whose joined piece
    // scores highest, so a piece's score is minus the rank of the first merge that makes it
    // (pieces no merge makes score below them all): the same order as the merge list.
    const auto merge_list = tok.merge_ids();
    std::vector<float> score(static_cast<size_t>(tok.vocab_size()), -static_cast<float>(merge_list.size() + 1));
    for (size_t rank = merge_list.size(); rank-- > 0;) {
      const auto [left, right] = merge_list[rank];
      if (const auto joined = tok.token_to_id(tok.id_to_token(left) + tok.id_to_token(right)))
        score[static_cast<size_t>(*joined)] = -static_cast<float>(rank + 1);
    }
    for (int32_t i = 0; i < tok.vocab_size(); ++i) {
      const std::string t = tok.id_to_token(i);
      tokens.push_back(io::GgufValue::str(t));
      scores.push_back(io::GgufValue::f32(score[static_cast<size_t>(i)]));
      types.push_back(io::GgufValue::i32(i == tok.unk_id()    ? kUnknown
                                         : tok.is_special(i) ? kControl
                                         : tok.is_added(i)   ? kUserDefined
                                         : is_byte_piece(t)  ? kByte
                                                             : kNormal));
    }
    out.emplace_back("tokenizer.ggml.model", io::GgufValue::str("llama"));
    // Whether a space is prepended, seen from the tokenizer's own output.
    const auto a = tok.encode("a", false);
    const bool space_prefix = !a.empty() && tok.id_to_token(a[0]).rfind(kMetaspace, 0) == 0;
    out.emplace_back("tokenizer.ggml.add_space_prefix", io::GgufValue::boolean(space_prefix));
    if (tok.unk_id() >= 0) out.emplace_back("tokenizer.ggml.unknown_token_id", io::GgufValue::u32(static_cast<uint32_t>(tok.unk_id())));
  } else if (tok.byte_level()) {
    const GgufPreTokenizer* pt = gguf_pre_tokenizer_for(tok.split_patterns());
    if (!pt)
      fail(tok.where(), "pre_tokenizer: its Split patterns match no pre-tokenizer llama.cpp names (" +
                            gguf_pre_tokenizer_names() + "), so a GGUF could not say how to split text");
    for (int32_t i = 0; i < tok.vocab_size(); ++i) {
      tokens.push_back(io::GgufValue::str(tok.id_to_token(i)));
      types.push_back(io::GgufValue::i32(tok.is_special(i) ? kControl : tok.is_added(i) ? kUserDefined : kNormal));
    }
    for (const auto& m : tok.merges()) merges.push_back(io::GgufValue::str(m));
    out.emplace_back("tokenizer.ggml.model", io::GgufValue::str("gpt2"));
    out.emplace_back("tokenizer.ggml.pre", io::GgufValue::str(std::string(pt->names[0])));
  } else {
    fail(tok.where(), "a BPE tokenizer that is neither byte-level nor SentencePiece-style (byte fallback) has no GGUF form");
  }
  // Ids the tokenizer does not use, up to the embedding's rows (llama.cpp's converter: "[PAD<id>]",
  // unused, score -10000 in a scored vocabulary).
  for (int64_t i = static_cast<int64_t>(tokens.size()); i < model_vocab_size; ++i) {
    tokens.push_back(io::GgufValue::str("[PAD" + std::to_string(i) + "]"));
    types.push_back(io::GgufValue::i32(kUnused));
    if (!scores.empty()) scores.push_back(io::GgufValue::f32(-10000.0f));
  }
  out.emplace_back("tokenizer.ggml.tokens", io::GgufValue::array(io::GgufType::STRING, std::move(tokens)));
  if (!scores.empty()) out.emplace_back("tokenizer.ggml.scores", io::GgufValue::array(io::GgufType::FLOAT32, std::move(scores)));
  out.emplace_back("tokenizer.ggml.token_type", io::GgufValue::array(io::GgufType::INT32, std::move(types)));
  if (!merges.empty()) out.emplace_back("tokenizer.ggml.merges", io::GgufValue::array(io::GgufType::STRING, std::move(merges)));
  if (bos_id >= 0) out.emplace_back("tokenizer.ggml.bos_token_id", io::GgufValue::u32(static_cast<uint32_t>(bos_id)));
  if (eos_id >= 0) out.emplace_back("tokenizer.ggml.eos_token_id", io::GgufValue::u32(static_cast<uint32_t>(eos_id)));
  if (pad_id >= 0) out.emplace_back("tokenizer.ggml.padding_token_id", io::GgufValue::u32(static_cast<uint32_t>(pad_id)));
  out.emplace_back("tokenizer.ggml.add_bos_token", io::GgufValue::boolean(add_bos));
  out.emplace_back("tokenizer.ggml.add_eos_token", io::GgufValue::boolean(add_eos));
  return out;
}

}  // namespace anvil::tokenizer
