#include "tokenizer/normalizer.h"

#include <utf8proc.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>

#include "tokenizer/byte_level.h"
#include "tokenizer/replacement.h"
#include "util/error.h"
#include "util/json_reader.h"

namespace anvil::tokenizer {

std::string replace_all(std::string_view text, std::string_view from, std::string_view to) {
  if (from.empty()) return std::string(text);
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  for (size_t hit; (hit = text.find(from, pos)) != std::string_view::npos; pos = hit + from.size()) {
    out.append(text, pos, hit - pos);
    out.append(to);
  }
  out.append(text, pos);
  return out;
}

struct Normalizer::Step {
  enum Kind { Unicode, Prepend, Replace, Strip, ByteLevel } kind;
  int utf8proc_options = 0;     // Unicode
  std::string text;                        // Prepend: the prefix
  std::optional<Replacement> replacement;  // Replace
  bool left = false, right = false;  // Strip
};

namespace {

using nlohmann::json;

}  // namespace

Normalizer::Normalizer() = default;
Normalizer::~Normalizer() = default;
Normalizer::Normalizer(Normalizer&&) noexcept = default;
Normalizer& Normalizer::operator=(Normalizer&&) noexcept = default;

Normalizer Normalizer::parse(const json& spec, const std::string& where) {
  Normalizer n;
  n.where_ = where;
  if (spec.is_null()) return n;
  // Sequences nest; the JSON depth bound keeps the recursion bounded.
  auto add = [&](const auto& self, const json& s, const std::string& context) -> void {
    const util::JsonFields f(s, where, context);
    const std::string type = f.string_or("type", "");
    auto step = std::make_unique<Step>();
    if (type == "Sequence") {
      const json* list = f.find("normalizers");
      if (!list || !list->is_array()) f.error("normalizers", "must be a list");
      for (size_t i = 0; i < list->size(); ++i)
        self(self, (*list)[i], context + "normalizers[" + std::to_string(i) + "].");
      return;
    } else if (type == "NFC" || type == "NFKC" || type == "NFD" || type == "NFKD") {
      step->kind = Step::Unicode;
      step->utf8proc_options = UTF8PROC_STABLE | (type[type.size() - 1] == 'C' ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE) |
                               (type.find('K') != std::string::npos ? UTF8PROC_COMPAT : 0);
    } else if (type == "Prepend") {
      step->kind = Step::Prepend;
      step->text = f.string_or("prepend", "");
    } else if (type == "Replace") {
      step->kind = Step::Replace;
      step->replacement.emplace(Replacement::parse(f, where, context));
    } else if (type == "Strip") {
      step->kind = Step::Strip;
      step->left = f.boolean_or("strip_left", false);
      step->right = f.boolean_or("strip_right", false);
    } else if (type == "ByteLevel") {
      step->kind = Step::ByteLevel;
    } else {
      // Lowercase, Precompiled (SentencePiece's character map), BertNormalizer, ...: applying them
      // approximately would give other ids than the model was trained on.
      fail(where, context + "type: unsupported normalizer '" + type +
                      "' (supported: Sequence, Prepend, Replace, Strip, ByteLevel, NFC, NFKC, NFD, NFKD)");
    }
    n.steps_.push_back(std::move(step));
  };
  add(add, spec, "normalizer.");
  return n;
}

bool Normalizer::empty() const { return steps_.empty(); }

std::string Normalizer::apply(std::string_view input) const {
  std::string text(input);
  for (const auto& s : steps_) {
    switch (s->kind) {
      case Step::Unicode: {
        if (text.empty()) break;
        utf8proc_uint8_t* out = nullptr;
        const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                                static_cast<utf8proc_ssize_t>(text.size()), &out,
                                                static_cast<utf8proc_option_t>(s->utf8proc_options));
        if (n < 0) fail(where_, "normalization failed: " + std::string(utf8proc_errmsg(n)));
        text.assign(reinterpret_cast<char*>(out), static_cast<size_t>(n));
        std::free(out);
        break;
      }
      case Step::ByteLevel:
        text = bytes_to_symbols(text);
        break;
      case Step::Prepend:
        if (!text.empty()) text.insert(0, s->text);  // the library prepends to non-empty text only
        break;
      case Step::Replace:
        text = s->replacement->apply(text);
        break;
      case Step::Strip: {
        size_t b = 0, e = text.size();
        if (s->left)
          while (b < e) {
            utf8proc_int32_t cp;
            const auto len = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + b), e - b, &cp);
            if (len <= 0 || !is_white_space(static_cast<uint32_t>(cp))) break;
            b += static_cast<size_t>(len);
          }
        if (s->right)
          while (e > b) {
            size_t start = e - 1;
            while (start > b && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
            utf8proc_int32_t cp;
            utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + start), e - start, &cp);
            if (!is_white_space(static_cast<uint32_t>(cp))) break;
            e = start;
          }
        text = text.substr(b, e - b);
        break;
      }
    }
  }
  return text;
}

}  // namespace anvil::tokenizer
