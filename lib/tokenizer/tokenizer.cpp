#include "tokenizer/tokenizer.h"

#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <shared_mutex>
#include <unordered_map>

#include "io/atomic_file.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"
#include "util/error.h"
#include "util/json_reader.h"

namespace anvil::tokenizer {
namespace {

using nlohmann::json;

// Token ids index dense tables; no real vocabulary comes near this (Gemma-3: 262,144).
constexpr int64_t kMaxTokenId = 10'000'000;

// GPT-2's pattern, used by ByteLevel when its use_regex flag is set.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct AddedToken {
  int32_t id;
  std::string content;
  bool special;
  bool lstrip, rstrip;
};

enum class Normalization { None, NFC, NFKC, NFD, NFKD };

struct PairHash {
  size_t operator()(uint64_t v) const { return std::hash<uint64_t>()(v); }
};

uint64_t pair_key(int32_t a, int32_t b) { return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b); }

struct Merge {
  int32_t rank;
  int32_t result;
};

// A template item: either a fixed special token or the input sequence.
struct TemplateItem {
  bool is_sequence;
  std::vector<int32_t> ids;
};

bool valid_utf8(std::string_view s, size_t* bad_at) {
  size_t pos = 0;
  while (pos < s.size()) {
    size_t start = pos;
    if (next_code_point(s, pos) < 0) {
      *bad_at = start;
      return false;
    }
  }
  return true;
}

}  // namespace

struct Tokenizer::Impl {
  std::string where;
  std::unordered_map<std::string, int32_t> vocab;
  std::vector<std::string> id_to_token;
  std::unordered_map<uint64_t, Merge, PairHash> merges;
  std::vector<std::pair<int32_t, int32_t>> merge_list;
  bool ignore_merges = false;
  std::vector<AddedToken> added;
  std::array<std::vector<const AddedToken*>, 256> added_by_first_byte;  // candidates per leading byte
  std::vector<uint8_t> special_flags;  // by id
  std::vector<uint8_t> added_flags;    // by id
  Normalization normalization = Normalization::None;
  std::vector<Regex> splits;           // applied in order, "Isolated" behaviour
  // A Split pattern from the file; one PCRE2 cannot compile is an error naming the file.
  void add_split(const std::string& pattern) {
    try {
      splits.emplace_back(pattern);
    } catch (const Error& e) {
      fail(where, "pre_tokenizer Split pattern: " + e.problem());
    }
  }
  std::vector<std::string> split_sources;  // their patterns, GPT-2's ByteLevel regex left out
  bool byte_level = false;
  bool add_prefix_space = false;
  std::vector<TemplateItem> single_template;

  mutable std::shared_mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  void parse(const json& j);
  void parse_model(const json& m);
  void parse_pre_tokenizer(const json& p);
  void parse_post_processor(const json& p);
  void parse_normalizer(const json& n);
  std::string normalize(std::string_view text) const;
  void encode_segment(std::string_view text, std::vector<int32_t>& out) const;
  void bpe_word(const std::string& symbols, std::vector<int32_t>& out) const;
  int32_t require_token(const std::string& token) const;
};

int32_t Tokenizer::Impl::require_token(const std::string& token) const {
  auto it = vocab.find(token);
  if (it == vocab.end()) fail(where, "token '" + token + "' used by the post-processor is not in the vocabulary");
  return it->second;
}

void Tokenizer::Impl::parse_model(const json& m) {
  const util::JsonFields f(m, where, "model.");
  if (const std::string type = f.string_or("type", ""); type != "BPE")
    fail(where, "unsupported tokenizer model '" + type + "' (only byte-level BPE)");
  if (!m.contains("vocab") || !m["vocab"].is_object()) fail(where, "model.vocab is missing");
  int32_t max_id = -1;
  for (auto it = m["vocab"].begin(); it != m["vocab"].end(); ++it) {
    if (!it.value().is_number_integer()) fail(where, "vocab entry '" + it.key() + "' has a non-integer id");
    int64_t id = it.value().get<int64_t>();
    if (id < 0 || id > kMaxTokenId) fail(where, "vocab entry '" + it.key() + "' has id out of range");
    vocab[it.key()] = static_cast<int32_t>(id);
    max_id = std::max<int32_t>(max_id, static_cast<int32_t>(id));
  }
  id_to_token.assign(max_id + 1, "");
  for (const auto& [tok, id] : vocab) id_to_token[id] = tok;
  ignore_merges = f.boolean_or("ignore_merges", false);
  if (m.contains("byte_fallback") && m["byte_fallback"].is_boolean() && m["byte_fallback"].get<bool>())
    fail(where, "byte_fallback BPE (SentencePiece-style) is not supported; only byte-level BPE");
  if (!m.contains("merges") || !m["merges"].is_array()) fail(where, "model.merges is missing");
  int32_t rank = 0;
  for (const auto& entry : m["merges"]) {
    std::string a, b;
    if (entry.is_string()) {  // older files: "a b"
      std::string s = entry.get<std::string>();
      size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) fail(where, "merge '" + s + "' is not two tokens");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string()) {
      a = entry[0].get<std::string>();
      b = entry[1].get<std::string>();
    } else {
      fail(where, "merge #" + std::to_string(rank) + " is malformed");
    }
    auto ia = vocab.find(a), ib = vocab.find(b), ir = vocab.find(a + b);
    if (ia == vocab.end() || ib == vocab.end() || ir == vocab.end())
      fail(where, "merge '" + a + " " + b + "' refers to tokens missing from the vocabulary");
    merges.emplace(pair_key(ia->second, ib->second), Merge{rank, ir->second});
    merge_list.emplace_back(ia->second, ib->second);
    ++rank;
  }
}

void Tokenizer::Impl::parse_normalizer(const json& n) {
  if (n.is_null()) return;
  const std::string type = util::JsonFields(n, where, "normalizer.").string_or("type", "");
  if (type == "NFC") normalization = Normalization::NFC;
  else if (type == "NFKC") normalization = Normalization::NFKC;
  else if (type == "NFD") normalization = Normalization::NFD;
  else if (type == "NFKD") normalization = Normalization::NFKD;
  else if (type == "Sequence" && n.contains("normalizers") && n["normalizers"].empty()) return;
  else fail(where, "unsupported normalizer '" + type + "'");
}

void Tokenizer::Impl::parse_pre_tokenizer(const json& p) {
  if (p.is_null()) return;
  const util::JsonFields f(p, where, "pre_tokenizer.");
  const std::string type = f.string_or("type", "");
  if (type == "Sequence") {
    const json* steps = f.find("pretokenizers");
    if (steps && !steps->is_array()) f.error("pretokenizers", "must be a list");
    if (steps)
      for (const auto& step : *steps) parse_pre_tokenizer(step);
  } else if (type == "Split") {
    const json* pattern = f.find("pattern");
    if (!pattern) f.error("pattern", "is missing (a Split pre-tokenizer needs one)");
    const util::JsonFields pat(*pattern, where, "pre_tokenizer.pattern.");
    const std::string behavior = f.string_or("behavior", "Isolated");
    if (behavior != "Isolated" || f.boolean_or("invert", false))
      fail(where, "unsupported Split behaviour '" + behavior + "' (only Isolated, not inverted)");
    if (pat.has("Regex")) {
      add_split(pat.string_or("Regex", ""));
      split_sources.push_back(pat.string_or("Regex", ""));
    } else if (pat.has("String")) {
      // A literal pattern: escape it for PCRE2.
      add_split("\\Q" + pat.string_or("String", "") + "\\E");
    } else {
      fail(where, "Split pre-tokenizer without a pattern");
    }
  } else if (type == "ByteLevel") {
    byte_level = true;
    add_prefix_space = f.boolean_or("add_prefix_space", false);
    if (f.boolean_or("use_regex", true)) splits.emplace_back(kGpt2Pattern);
  } else if (type == "Digits") {
    splits.emplace_back(f.boolean_or("individual_digits", false) ? R"(\p{N}|[^\p{N}]+)" : R"(\p{N}+|[^\p{N}]+)");
  } else {
    fail(where, "unsupported pre-tokenizer '" + type + "'");
  }
}

void Tokenizer::Impl::parse_post_processor(const json& p) {
  if (p.is_null()) return;
  const util::JsonFields f(p, where, "post_processor.");
  const std::string type = f.string_or("type", "");
  if (type == "Sequence") {
    const json* steps = f.find("processors");
    if (steps && !steps->is_array()) f.error("processors", "must be a list");
    if (steps)
      for (const auto& step : *steps) parse_post_processor(step);
  } else if (type == "ByteLevel") {
    // Only adjusts offsets, which we do not report.
  } else if (type == "TemplateProcessing") {
    single_template.clear();
    for (const auto& item : p.value("single", json::array())) {
      if (item.contains("Sequence")) {
        single_template.push_back({true, {}});
      } else if (item.contains("SpecialToken")) {
        const std::string id =
            util::JsonFields(item["SpecialToken"], where, "post_processor.single[].SpecialToken.").string_or("id", "");
        TemplateItem t{false, {}};
        const json& specials = p.value("special_tokens", json::object());
        if (specials.contains(id) && specials[id].contains("ids")) {
          for (const auto& v : specials[id]["ids"]) {
            if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= static_cast<int64_t>(id_to_token.size()))
              fail(where, "post_processor.special_tokens['" + id + "'].ids holds " + util::json_brief(v) +
                              ", not an id of the vocabulary");
            t.ids.push_back(v.get<int32_t>());
          }
        } else {
          t.ids.push_back(require_token(id));
        }
        single_template.push_back(std::move(t));
      }
    }
  } else {
    fail(where, "unsupported post-processor '" + type + "'");
  }
}

void Tokenizer::Impl::parse(const json& j) {
  if (!j.is_object()) fail(where, "not a JSON object");
  parse_model(j.value("model", json()));
  const json added_tokens = j.value("added_tokens", json::array());
  if (!added_tokens.is_array()) fail(where, "\"added_tokens\" must be a list");
  for (size_t i = 0; i < added_tokens.size(); ++i) {
    const util::JsonFields a(added_tokens[i], where, "added_tokens[" + std::to_string(i) + "].");
    // Ids index dense tables: the bound keeps a stranger's 10^15 from becoming an allocation.
    AddedToken t{static_cast<int32_t>(a.integer("id", 0, kMaxTokenId)), a.string_or("content", ""),
                 a.boolean_or("special", false), a.boolean_or("lstrip", false), a.boolean_or("rstrip", false)};
    if (t.content.empty()) fail(where, "added token " + std::to_string(t.id) + " has no content");
    if (t.id >= static_cast<int32_t>(id_to_token.size())) id_to_token.resize(t.id + 1);
    id_to_token[t.id] = t.content;
    vocab[t.content] = t.id;
    added.push_back(std::move(t));
  }
  // Longest first, so that leftmost-longest matching is a first-hit scan.
  std::stable_sort(added.begin(), added.end(),
                   [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
  special_flags.assign(id_to_token.size(), 0);
  added_flags.assign(id_to_token.size(), 0);
  for (const auto& t : added) {
    added_by_first_byte[static_cast<uint8_t>(t.content[0])].push_back(&t);
    added_flags[t.id] = 1;
    if (t.special) special_flags[t.id] = 1;
  }
  parse_normalizer(j.value("normalizer", json()));
  parse_pre_tokenizer(j.value("pre_tokenizer", json()));
  parse_post_processor(j.value("post_processor", json()));
  if (!byte_level) {
    const json& dec = j.value("decoder", json());
    if (!dec.is_object() || util::JsonFields(dec, where, "decoder.").string_or("type", "") != "ByteLevel")
      fail(where, "only byte-level BPE tokenizers are supported (no ByteLevel pre-tokenizer or decoder)");
    byte_level = true;
  }
}

std::string Tokenizer::Impl::normalize(std::string_view text) const {
  if (normalization == Normalization::None) return std::string(text);
  int options = UTF8PROC_STABLE;
  switch (normalization) {
    case Normalization::NFC: options |= UTF8PROC_COMPOSE; break;
    case Normalization::NFKC: options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case Normalization::NFD: options |= UTF8PROC_DECOMPOSE; break;
    case Normalization::NFKD: options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
    default: break;
  }
  utf8proc_uint8_t* out = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                    static_cast<utf8proc_ssize_t>(text.size()), &out,
                                    static_cast<utf8proc_option_t>(options));
  if (n < 0) fail(where, "normalization failed: " + std::string(utf8proc_errmsg(n)));
  std::string result(reinterpret_cast<char*>(out), static_cast<size_t>(n));
  std::free(out);
  return result;
}

void Tokenizer::Impl::bpe_word(const std::string& symbols, std::vector<int32_t>& out) const {
  if (ignore_merges) {
    if (auto it = vocab.find(symbols); it != vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  {
    std::shared_lock lock(cache_mutex);
    if (auto it = cache.find(symbols); it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  // One symbol per code point, then repeatedly merge the lowest-ranked adjacent pair.
  std::vector<int32_t> word;
  size_t pos = 0;
  while (pos < symbols.size()) {
    size_t start = pos;
    next_code_point(symbols, pos);
    auto it = vocab.find(symbols.substr(start, pos - start));
    if (it == vocab.end()) fail(where, "byte symbol '" + symbols.substr(start, pos - start) + "' missing from vocabulary");
    word.push_back(it->second);
  }
  while (word.size() > 1) {
    int32_t best_rank = std::numeric_limits<int32_t>::max();
    size_t best_i = 0;
    int32_t best_result = -1;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      auto it = merges.find(pair_key(word[i], word[i + 1]));
      if (it != merges.end() && it->second.rank < best_rank) {
        best_rank = it->second.rank;
        best_i = i;
        best_result = it->second.result;
      }
    }
    if (best_result < 0) break;
    // Merge every non-overlapping occurrence of the best pair, left to right.
    std::vector<int32_t> next;
    next.reserve(word.size());
    int32_t a = word[best_i], b = word[best_i + 1];
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == a && word[i + 1] == b) {
        next.push_back(best_result);
        i += 2;
      } else {
        next.push_back(word[i++]);
      }
    }
    word.swap(next);
  }
  out.insert(out.end(), word.begin(), word.end());
  if (symbols.size() < 256) {
    std::unique_lock lock(cache_mutex);
    if (cache.size() > 200'000) cache.clear();
    cache.emplace(symbols, std::move(word));
  }
}

void Tokenizer::Impl::encode_segment(std::string_view segment, std::vector<int32_t>& out) const {
  if (segment.empty()) return;
  std::string text = normalize(segment);
  if (add_prefix_space && !text.empty() && text[0] != ' ') text.insert(text.begin(), ' ');
  // Each split step refines the pieces of the previous one ("Isolated": matches and the gaps
  // between them both become pieces).
  std::vector<std::pair<size_t, size_t>> pieces{{0, text.size()}};
  for (const auto& re : splits) {
    std::vector<std::pair<size_t, size_t>> refined;
    for (auto [b, e] : pieces) {
      std::string_view piece(text.data() + b, e - b);
      size_t cursor = 0;
      for (auto [mb, me] : re.find_all(piece)) {
        if (mb > cursor) refined.emplace_back(b + cursor, b + mb);
        refined.emplace_back(b + mb, b + me);
        cursor = me;
      }
      if (cursor < piece.size()) refined.emplace_back(b + cursor, e);
    }
    pieces.swap(refined);
  }
  for (auto [b, e] : pieces) bpe_word(bytes_to_symbols(std::string_view(text).substr(b, e - b)), out);
}

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::from_json(const std::string& text, const std::string& where) {
  Tokenizer t;
  t.impl_->where = where;
  json j = util::parse_json(text, where);
  try {
    t.impl_->parse(j);
  } catch (const json::exception& e) {
    fail(where, std::string("unexpected structure (") + e.what() + ")");
  }
  return t;
}

Tokenizer Tokenizer::load(const std::filesystem::path& path) {
  auto file = std::filesystem::is_directory(path) ? path / "tokenizer.json" : path;
  if (!std::filesystem::exists(file)) fail(file.string(), "not found");
  return from_json(io::read_text_file(file), file.string());
}

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
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 8);
  // Added tokens are found first, leftmost-longest; the text between them goes through BPE.
  size_t seg_start = 0, pos = 0;
  while (pos < text.size()) {
    const AddedToken* hit = nullptr;
    for (const AddedToken* t : m.added_by_first_byte[static_cast<uint8_t>(text[pos])])
      if (text.compare(pos, t->content.size(), t->content) == 0) {
        hit = t;
        break;
      }
    if (!hit) {
      ++pos;
      continue;
    }
    size_t seg_end = pos, next = pos + hit->content.size();
    if (hit->lstrip)
      while (seg_end > seg_start && std::isspace(static_cast<unsigned char>(text[seg_end - 1]))) --seg_end;
    if (hit->rstrip)
      while (next < text.size() && std::isspace(static_cast<unsigned char>(text[next]))) ++next;
    m.encode_segment(text.substr(seg_start, seg_end - seg_start), ids);
    ids.push_back(hit->id);
    seg_start = pos = next;
  }
  m.encode_segment(text.substr(seg_start), ids);
  if (!add_special_tokens || m.single_template.empty()) return ids;
  std::vector<int32_t> out;
  out.reserve(ids.size() + 4);
  for (const auto& item : m.single_template) {
    if (item.is_sequence) out.insert(out.end(), ids.begin(), ids.end());
    else out.insert(out.end(), item.ids.begin(), item.ids.end());
  }
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& m = *impl_;
  std::string symbols;
  for (int32_t id : ids) {
    if (id < 0 || id >= static_cast<int32_t>(m.id_to_token.size())) continue;
    if (skip_special_tokens && m.special_flags[id]) continue;
    symbols += m.id_to_token[id];
  }
  return symbols_to_bytes(symbols);
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->id_to_token.size()); }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->vocab.find(std::string(token));
  if (it == impl_->vocab.end()) return std::nullopt;
  return it->second;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return "";
  return impl_->id_to_token[id];
}

bool Tokenizer::is_special(int32_t id) const { return id >= 0 && id < vocab_size() && impl_->special_flags[id]; }
bool Tokenizer::is_added(int32_t id) const { return id >= 0 && id < vocab_size() && impl_->added_flags[id]; }

std::vector<std::string> Tokenizer::split_patterns() const { return impl_->split_sources; }

bool Tokenizer::adds_special_tokens() const {
  for (const auto& item : impl_->single_template)
    if (!item.is_sequence && !item.ids.empty()) return true;
  return false;
}

std::vector<std::string> Tokenizer::merges() const {
  std::vector<std::string> out;
  for (auto [a, b] : impl_->merge_list) out.push_back(impl_->id_to_token[a] + " " + impl_->id_to_token[b]);
  return out;
}

}  // namespace anvil::tokenizer
