#include "tokenizer/pre_tokenizer.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <optional>

#include "tokenizer/byte_level.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/regex.h"
#include "util/error.h"
#include "util/json_reader.h"

namespace anvil::tokenizer {

// GPT-2's pattern, used by ByteLevel when its use_regex flag is set.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct PreTokenizer::Step {
  enum Kind { Split, ByteLevel, Metaspace } kind;
  std::optional<Regex> regex;  // Split (literal patterns are escaped into a regex, as the library does)
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  bool add_prefix_space = false;  // ByteLevel
  std::string replacement;        // Metaspace, UTF-8
  PrependScheme prepend = PrependScheme::Always;
  bool split_on_replacement = true;
};

std::vector<std::pair<size_t, size_t>> split_ranges(size_t length, const std::vector<std::pair<size_t, size_t>>& matches,
                                                    SplitBehavior behavior, bool invert) {
  // The whole text as alternating stretches, each marked as matched or not (as the library's
  // Pattern::find_matches gives them), then folded by the behaviour exactly as the library does.
  struct Stretch {
    size_t b, e;
    bool match;
  };
  std::vector<Stretch> all;
  size_t cursor = 0;
  for (auto [b, e] : matches) {
    if (b > cursor) all.push_back({cursor, b, invert});
    all.push_back({b, e, !invert});
    cursor = e;
  }
  if (cursor < length || all.empty()) all.push_back({cursor, length, invert});

  std::vector<std::pair<size_t, size_t>> out;
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::Removed:
      for (const auto& s : all)
        if (!s.match) out.emplace_back(s.b, s.e);
      break;
    case SplitBehavior::Isolated:
      for (const auto& s : all) out.emplace_back(s.b, s.e);
      break;
    case SplitBehavior::MergedWithPrevious:
      for (const auto& s : all) {
        if (s.match && !previous_match && !out.empty()) out.back().second = s.e;
        else out.emplace_back(s.b, s.e);
        previous_match = s.match;
      }
      break;
    case SplitBehavior::MergedWithNext:
      for (size_t i = all.size(); i-- > 0;) {
        const auto& s = all[i];
        if (s.match && !previous_match && !out.empty()) out.back().first = s.b;
        else out.emplace_back(s.b, s.e);
        previous_match = s.match;
      }
      std::reverse(out.begin(), out.end());
      break;
    case SplitBehavior::Contiguous:
      for (size_t i = 0; i < all.size(); ++i) {
        const auto& s = all[i];
        if (i > 0 && s.match == previous_match) out.back().second = s.e;
        else out.emplace_back(s.b, s.e);
        previous_match = s.match;
      }
      break;
  }
  std::erase_if(out, [](const auto& r) { return r.first == r.second; });
  return out;
}

namespace {

using nlohmann::json;

std::string escape_for_pcre(const std::string& literal) {
  // \Q...\E cannot hold "\E" itself; escaping every non-alphanumeric ASCII byte always works.
  std::string out;
  for (char c : literal) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x80 && !std::isalnum(u)) out += '\\';
    out += c;
  }
  return out;
}

SplitBehavior parse_behavior(const util::JsonFields& f) {
  const std::string b = f.string_or("behavior", "");
  if (b == "Removed") return SplitBehavior::Removed;
  if (b == "Isolated") return SplitBehavior::Isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (b == "Contiguous") return SplitBehavior::Contiguous;
  f.error("behavior", "is '" + b + "' (supported: Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous)");
}

Regex compile(const std::string& pattern, const std::string& where, const std::string& key) {
  try {
    return Regex(pattern);
  } catch (const Error& e) {
    fail(where, key + ": " + e.problem());
  }
}

// The Metaspace replacement: one character (the library's type is a char).
std::string one_character(const util::JsonFields& f, const char* key, const std::string& fallback) {
  const std::string s = f.string_or(key, fallback);
  size_t pos = 0;
  if (s.empty() || next_code_point(s, pos) < 0 || pos != s.size()) f.error(key, "must be exactly one character");
  return s;
}

}  // namespace

PrependScheme parse_prepend_scheme(const util::JsonFields& f) {
  PrependScheme scheme = PrependScheme::Always;
  if (f.has("prepend_scheme")) {
    const std::string s = f.string_or("prepend_scheme", "");
    if (s == "first") scheme = PrependScheme::First;
    else if (s == "always") scheme = PrependScheme::Always;
    else if (s == "never") scheme = PrependScheme::Never;
    else f.error("prepend_scheme", "is '" + s + "' (first, always or never)");
  }
  if (f.has("add_prefix_space") && !f.boolean_or("add_prefix_space", true)) {
    if (scheme != PrependScheme::Never) f.error("add_prefix_space", "is false but prepend_scheme is not \"never\"");
  }
  return scheme;
}

PreTokenizer::PreTokenizer() = default;
PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

PreTokenizer PreTokenizer::parse(const json& spec, const std::string& where) {
  PreTokenizer p;
  if (spec.is_null()) return p;
  auto add = [&](const auto& self, const json& s, const std::string& context) -> void {
    const util::JsonFields f(s, where, context);
    const std::string type = f.string_or("type", "");
    auto step = std::make_unique<Step>();
    if (type == "Sequence") {
      const json* list = f.find("pretokenizers");
      if (!list || !list->is_array()) f.error("pretokenizers", "must be a list");
      for (size_t i = 0; i < list->size(); ++i)
        self(self, (*list)[i], context + "pretokenizers[" + std::to_string(i) + "].");
      return;
    } else if (type == "Split") {
      step->kind = Step::Split;
      const json* pattern = f.find("pattern");
      if (!pattern || !pattern->is_object()) f.error("pattern", "must be {\"String\": ...} or {\"Regex\": ...}");
      const util::JsonFields pat(*pattern, where, context + "pattern.");
      if (pat.has("Regex")) {
        const std::string source = pat.string_or("Regex", "");
        step->regex.emplace(compile(source, where, context + "pattern.Regex"));
        p.split_patterns_.push_back(source);
      } else if (pat.has("String")) {
        const std::string literal = pat.string_or("String", "");
        if (!literal.empty()) step->regex.emplace(compile(escape_for_pcre(literal), where, context + "pattern.String"));
      } else {
        f.error("pattern", "must be {\"String\": ...} or {\"Regex\": ...}");
      }
      step->behavior = parse_behavior(f);
      step->invert = f.boolean_or("invert", false);
    } else if (type == "ByteLevel") {
      step->kind = Step::ByteLevel;
      step->add_prefix_space = f.boolean_or("add_prefix_space", true);
      if (f.boolean_or("use_regex", true)) step->regex.emplace(kGpt2Pattern);
      p.byte_level_ = true;
    } else if (type == "Metaspace") {
      step->kind = Step::Metaspace;
      step->replacement = one_character(f, "replacement", "\xE2\x96\x81");
      step->prepend = parse_prepend_scheme(f);
      step->split_on_replacement = f.boolean_or("split", true);
      p.metaspace_first_ = step->prepend == PrependScheme::First;
    } else if (type == "Digits") {
      step->kind = Step::Split;
      step->regex.emplace(R"(\p{N})");
      step->behavior = f.boolean_or("individual_digits", false) ? SplitBehavior::Isolated : SplitBehavior::Contiguous;
    } else {
      fail(where, context + "type: unsupported pre-tokenizer '" + type +
                      "' (supported: Sequence, Split, ByteLevel, Metaspace, Digits)");
    }
    p.steps_.push_back(std::move(step));
  };
  add(add, spec, "pre_tokenizer.");
  return p;
}

void PreTokenizer::split(std::vector<Piece>& pieces) const {
  for (const auto& step : steps_) {
    std::vector<Piece> refined;
    refined.reserve(pieces.size());
    for (auto& piece : pieces) {
      auto emit = [&](const std::vector<std::pair<size_t, size_t>>& matches, SplitBehavior behavior, bool invert) {
        for (auto [b, e] : split_ranges(piece.text.size(), matches, behavior, invert))
          refined.push_back({piece.text.substr(b, e - b), piece.at_origin && b == 0});
      };
      switch (step->kind) {
        case Step::Split:
          if (!step->regex) {  // an empty literal matches nothing
            if (!piece.text.empty()) refined.push_back(std::move(piece));
            break;
          }
          emit(step->regex->find_all(piece.text), step->behavior, step->invert);
          break;
        case Step::ByteLevel: {
          if (step->add_prefix_space && (piece.text.empty() || piece.text[0] != ' ')) piece.text.insert(0, 1, ' ');
          const size_t first = refined.size();
          if (step->regex) emit(step->regex->find_all(piece.text), SplitBehavior::Isolated, false);
          else refined.push_back(std::move(piece));
          for (size_t i = first; i < refined.size(); ++i) refined[i].text = bytes_to_symbols(refined[i].text);
          break;
        }
        case Step::Metaspace: {
          piece.text = replace_all(piece.text, " ", step->replacement);
          const bool starts = piece.text.compare(0, step->replacement.size(), step->replacement) == 0;
          if (!starts && (step->prepend == PrependScheme::Always || (step->prepend == PrependScheme::First && piece.at_origin)))
            piece.text.insert(0, step->replacement);
          if (step->split_on_replacement) {
            std::vector<std::pair<size_t, size_t>> matches;
            const std::string& r = step->replacement;
            for (size_t at = 0; (at = piece.text.find(r, at)) != std::string::npos; at += r.size())
              matches.emplace_back(at, at + r.size());
            emit(matches, SplitBehavior::MergedWithNext, false);
          } else {
            refined.push_back(std::move(piece));
          }
          break;
        }
      }
    }
    std::erase_if(refined, [](const Piece& p) { return p.text.empty(); });
    pieces.swap(refined);
  }
}

}  // namespace anvil::tokenizer
