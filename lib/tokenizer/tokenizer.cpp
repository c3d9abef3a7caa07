#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/post_processor.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/sentencepiece_model.h"
#include "tokenizer/tokenizer_json.h"
#include "tokenizer/utf8.h"
#include "util/error.h"
#include "util/json_reader.h"

namespace anvil::tokenizer {
namespace {

using nlohmann::json;

// Token ids index dense tables; no real vocabulary comes near this (Gemma-3: 262,144).
constexpr int64_t kMaxTokenId = 10'000'000;

}  // namespace

// The tokenizers library's pipeline, stage by stage: added tokens are cut out of the raw text,
// the rest is normalized (and searched again for added tokens that match normalized text),
// pre-tokenized into pieces, and each piece is merged by the BPE model; the post-processor adds
// the special tokens. Decoding runs the decoder over the ids' tokens.
struct Tokenizer::Impl {
  std::string where;
  BpeModel model;
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  Decoder decoder;
  PostProcessor post_processor;
  std::vector<AddedToken> added;
  AddedTokenMatcher raw_matcher, normalized_matcher;
  std::vector<std::string> id_to_token;
  std::vector<uint8_t> special_flags, added_flags;  // by id
  TokenTable added_ids;                             // added token content -> id
  // tokenizer.model instead of tokenizer.json: libsentencepiece does the work, and the special
  // tokens added are BOS / EOS as tokenizer_config.json's add_bos_token / add_eos_token say.
  std::unique_ptr<SentencePieceModel> spm;
  bool spm_add_bos = true, spm_add_eos = false;

  void parse(TokenizerJson& file);
  void parse_added_tokens(const json& list);
  void encode_text(std::string_view text, bool at_origin, std::vector<int32_t>& out) const;
};

void Tokenizer::Impl::parse_added_tokens(const json& list) {
  if (!list.is_array()) fail(where, "added_tokens: must be a list");
  for (size_t i = 0; i < list.size(); ++i) {
    const util::JsonFields a(list[i], where, "added_tokens[" + std::to_string(i) + "].");
    // Ids index dense tables: the bound keeps a stranger's 10^15 from becoming an allocation.
    AddedToken t{static_cast<int32_t>(a.integer("id", 0, kMaxTokenId)), a.string_or("content", ""),
                 a.boolean_or("special", false), a.boolean_or("lstrip", false), a.boolean_or("rstrip", false),
                 a.boolean_or("normalized", !a.boolean_or("special", false)), a.boolean_or("single_word", false)};
    if (t.content.empty()) a.error("content", "is empty");
    if (!valid_utf8(t.content)) a.error("content", "is not valid UTF-8");
    added.push_back(std::move(t));
  }
}

void Tokenizer::Impl::parse(TokenizerJson& file) {
  const json& j = file.rest;
  if (!j.is_object()) fail(where, "not a JSON object");
  const util::JsonFields f(j, where);
  if (!f.find("model")) f.error("model", "is missing");
  model = BpeModel::parse(file, where, kMaxTokenId);
  parse_added_tokens(j.value("added_tokens", json::array()));
  normalizer = Normalizer::parse(j.value("normalizer", json()), where);
  pre_tokenizer = PreTokenizer::parse(j.value("pre_tokenizer", json()), where);
  decoder = Decoder::parse(j.value("decoder", json()), where);

  int32_t limit = model.id_limit();
  for (const auto& t : added) limit = std::max(limit, t.id + 1);
  id_to_token.assign(static_cast<size_t>(limit), "");
  model.vocab().for_each([&](std::string_view text, int32_t id) { id_to_token[static_cast<size_t>(id)] = text; });
  special_flags.assign(id_to_token.size(), 0);
  added_flags.assign(id_to_token.size(), 0);
  std::vector<const AddedToken*> raw, normalized;
  std::vector<std::string> raw_patterns, normalized_patterns;
  for (const auto& t : added) {
    id_to_token[static_cast<size_t>(t.id)] = t.content;
    added_ids.insert_or_assign(t.content, t.id);
    added_flags[static_cast<size_t>(t.id)] = 1;
    if (t.special) special_flags[static_cast<size_t>(t.id)] = 1;
    // A token marked normalized is looked for in normalized text, as the normalizer writes it.
    if (t.normalized && !normalizer.empty()) {
      normalized.push_back(&t);
      normalized_patterns.push_back(normalizer.apply(t.content));
    } else {
      raw.push_back(&t);
      raw_patterns.push_back(t.content);
    }
  }
  raw_matcher = AddedTokenMatcher(std::move(raw), std::move(raw_patterns));
  normalized_matcher = AddedTokenMatcher(std::move(normalized), std::move(normalized_patterns));
  const auto lookup = [this](std::string_view token) -> std::optional<int32_t> {
    if (const int32_t id = added_ids.find(token); id >= 0) return id;
    if (const int32_t id = model.vocab().find(token); id >= 0) return id;
    return std::nullopt;
  };
  post_processor = PostProcessor::parse(j.value("post_processor", json()), where, lookup,
                                        static_cast<int64_t>(id_to_token.size()));
}

void Tokenizer::Impl::encode_text(std::string_view text, bool at_origin, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  const std::string normalized = normalizer.apply(text);
  for (const Segment& s : normalized_matcher.split(normalized)) {
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    if (s.begin == s.end) continue;
    std::vector<Piece> pieces{{normalized.substr(s.begin, s.end - s.begin), at_origin && s.begin == 0}};
    pre_tokenizer.split(pieces);
    for (const auto& p : pieces) model.tokenize(p.text, out);
  }
}

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::from_json(const std::string& text, const std::string& where) {
  Tokenizer t;
  t.impl_->where = where;
  TokenizerJson file = read_tokenizer_json(text, where);
  try {
    t.impl_->parse(file);
  } catch (const json::exception& e) {
    fail(where, std::string("unexpected structure (") + e.what() + ")");
  }
  return t;
}

Tokenizer Tokenizer::load(const std::filesystem::path& path) {
  if (std::filesystem::is_directory(path) && (path.extension() == ".json" || path.extension() == ".model"))
    fail(path.string(), "is a directory, not a tokenizer file");
  if (std::filesystem::is_directory(path)) {
    // tokenizer.json is what transformers' fast tokenizers read, so it wins when both exist.
    if (io::exists_quietly(path / "tokenizer.json")) return load(path / "tokenizer.json");
    if (io::exists_quietly(path / "tokenizer.model")) return load(path / "tokenizer.model");
    fail(path.string(), "holds neither tokenizer.json nor tokenizer.model");
  }
  if (!std::filesystem::exists(path)) fail(path.string(), "not found");
  if (path.extension() == ".model") return from_sentencepiece(path);
  return from_json(io::read_text_file(path), path.string());
}

Tokenizer Tokenizer::from_sentencepiece(const std::filesystem::path& file) {
  Tokenizer t;
  Impl& m = *t.impl_;
  m.where = file.string();
  m.spm = SentencePieceModel::load(file);
  // LlamaTokenizer's defaults; tokenizer_config.json beside the model may change them.
  const auto config = file.parent_path() / "tokenizer_config.json";
  if (io::exists_quietly(config)) {
    const json c = util::parse_json(io::read_text_file(config), config.string());
    const util::JsonFields f(c, config.string());
    m.spm_add_bos = f.boolean_or("add_bos_token", true);
    m.spm_add_eos = f.boolean_or("add_eos_token", false);
  }
  m.id_to_token.resize(static_cast<size_t>(m.spm->size()));
  m.special_flags.assign(m.id_to_token.size(), 0);
  m.added_flags.assign(m.id_to_token.size(), 0);
  for (int32_t id = 0; id < m.spm->size(); ++id) {
    m.id_to_token[static_cast<size_t>(id)] = m.spm->piece(id);
    if (m.spm->is_control(id) || m.spm->is_unknown(id)) m.special_flags[static_cast<size_t>(id)] = 1;
  }
  return t;
}

const SentencePieceModel* Tokenizer::sentencepiece() const { return impl_->spm.get(); }

void Tokenizer::check_fits_model(int64_t model_vocab, const std::string& model_where) const {
  if (vocab_size() > model_vocab)
    fail(impl_->where, "holds token ids up to " + std::to_string(vocab_size() - 1) + ", beyond the model's vocabulary of " +
                           std::to_string(model_vocab) + " (" + model_where + ")");
}

std::vector<int32_t> Tokenizer::encode_file(const std::filesystem::path& file, bool add_special_tokens) const {
  if (std::filesystem::is_directory(file)) fail(file.string(), "is a directory, not a text file");
  const std::string text = io::read_text_file(file);
  size_t bad = 0;
  if (!valid_utf8(text, &bad)) fail(file.string(), "not valid UTF-8 text (at byte " + std::to_string(bad) + ")");
  return encode(text, add_special_tokens);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const Impl& m = *impl_;
  size_t bad = 0;
  if (!valid_utf8(text, &bad)) fail("input text", "not valid UTF-8 at byte " + std::to_string(bad));
  if (m.spm) {
    std::vector<int32_t> ids = m.spm->encode(text);
    if (add_special_tokens && m.spm_add_bos && m.spm->bos_id() >= 0) ids.insert(ids.begin(), m.spm->bos_id());
    if (add_special_tokens && m.spm_add_eos && m.spm->eos_id() >= 0) ids.push_back(m.spm->eos_id());
    return ids;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 8);
  for (const Segment& s : m.raw_matcher.split(text)) {
    if (s.id >= 0) ids.push_back(s.id);
    else m.encode_text(text.substr(s.begin, s.end - s.begin), s.begin == 0, ids);
  }
  return add_special_tokens ? m.post_processor.apply(std::move(ids)) : ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& m = *impl_;
  if (m.spm) return m.spm->decode(ids, skip_special_tokens);
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= static_cast<int32_t>(m.id_to_token.size()) || m.id_to_token[static_cast<size_t>(id)].empty())
      continue;  // the library skips ids it has no token for
    if (skip_special_tokens && m.special_flags[static_cast<size_t>(id)]) continue;
    tokens.push_back(m.id_to_token[static_cast<size_t>(id)]);
  }
  return m.decoder.decode(std::move(tokens));
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->id_to_token.size()); }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (impl_->spm) {
    const int32_t id = impl_->spm->piece_to_id(token);
    return id < 0 ? std::nullopt : std::optional<int32_t>(id);
  }
  if (const int32_t id = impl_->added_ids.find(token); id >= 0) return id;
  if (const int32_t id = impl_->model.vocab().find(token); id >= 0) return id;
  return std::nullopt;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return "";
  return impl_->id_to_token[static_cast<size_t>(id)];
}

bool Tokenizer::is_special(int32_t id) const { return id >= 0 && id < vocab_size() && impl_->special_flags[id]; }
bool Tokenizer::is_added(int32_t id) const { return id >= 0 && id < vocab_size() && impl_->added_flags[id]; }

std::vector<std::string> Tokenizer::split_patterns() const { return impl_->pre_tokenizer.split_patterns(); }
bool Tokenizer::adds_special_tokens() const { return !special_prefix().empty() || !special_suffix().empty(); }
std::vector<int32_t> Tokenizer::special_prefix() const {
  const Impl& m = *impl_;
  if (!m.spm) return m.post_processor.prefix();
  if (m.spm_add_bos && m.spm->bos_id() >= 0) return {m.spm->bos_id()};
  return {};
}
std::vector<int32_t> Tokenizer::special_suffix() const {
  const Impl& m = *impl_;
  if (!m.spm) return m.post_processor.suffix();
  if (m.spm_add_eos && m.spm->eos_id() >= 0) return {m.spm->eos_id()};
  return {};
}
bool Tokenizer::byte_level() const { return !impl_->spm && impl_->pre_tokenizer.byte_level(); }
bool Tokenizer::byte_fallback() const { return impl_->spm ? true : impl_->model.byte_fallback(); }
int32_t Tokenizer::unk_id() const { return impl_->spm ? impl_->spm->unk_id() : impl_->model.unk_id(); }
const std::string& Tokenizer::where() const { return impl_->where; }

std::vector<std::string> Tokenizer::merges() const {
  std::vector<std::string> out;
  out.reserve(impl_->model.merge_list().size());
  for (auto [a, b] : impl_->model.merge_list())
    out.push_back(impl_->id_to_token[static_cast<size_t>(a)] + " " + impl_->id_to_token[static_cast<size_t>(b)]);
  return out;
}

}  // namespace anvil::tokenizer

namespace anvil::tokenizer {
std::vector<std::pair<int32_t, int32_t>> Tokenizer::merge_ids() const { return impl_->model.merge_list(); }
bool Tokenizer::space_prefix_at_start_only() const { return !impl_->spm && impl_->pre_tokenizer.metaspace_first(); }
}  // namespace anvil::tokenizer
