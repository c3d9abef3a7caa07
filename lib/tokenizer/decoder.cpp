#include "tokenizer/decoder.h"

#include <nlohmann/json.hpp>
#include <optional>

#include "tokenizer/byte_level.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/replacement.h"
#include "util/error.h"
#include "util/json_reader.h"

namespace anvil::tokenizer {

struct Decoder::Step {
  enum Kind { ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip } kind;
  std::string content;                     // Metaspace: the replacement character
  std::optional<Replacement> replacement;  // Replace
  PrependScheme prepend = PrependScheme::Always;
  std::string strip;             // Strip: the character
  size_t start = 0, stop = 0;
};

namespace {

using nlohmann::json;

// "<0xAB>" -> 0xAB, as the library reads it (u8::from_str_radix on the two characters, which
// also takes a sign: "<0x+A>" is 10).
std::optional<uint8_t> byte_token(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return std::nullopt;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (t[3] == '+') {
    const int v = hex(t[4]);
    return v < 0 ? std::nullopt : std::optional<uint8_t>(static_cast<uint8_t>(v));
  }
  const int hi = hex(t[3]), lo = hex(t[4]);
  if (hi < 0 || lo < 0) return std::nullopt;
  return static_cast<uint8_t>(hi * 16 + lo);
}

}  // namespace

Decoder::Decoder() = default;
Decoder::~Decoder() = default;
Decoder::Decoder(Decoder&&) noexcept = default;
Decoder& Decoder::operator=(Decoder&&) noexcept = default;

Decoder Decoder::parse(const json& spec, const std::string& where) {
  Decoder d;
  if (spec.is_null()) return d;
  auto add = [&](const auto& self, const json& s, const std::string& context) -> void {
    const util::JsonFields f(s, where, context);
    const std::string type = f.string_or("type", "");
    auto step = std::make_unique<Step>();
    if (type == "Sequence") {
      const json* list = f.find("decoders");
      if (!list || !list->is_array()) f.error("decoders", "must be a list");
      for (size_t i = 0; i < list->size(); ++i) self(self, (*list)[i], context + "decoders[" + std::to_string(i) + "].");
      return;
    } else if (type == "ByteLevel") {
      step->kind = Step::ByteLevel;
    } else if (type == "Metaspace") {
      step->kind = Step::Metaspace;
      step->content = f.string_or("replacement", "\xE2\x96\x81");
      step->prepend = parse_prepend_scheme(f);
    } else if (type == "Replace") {
      step->kind = Step::Replace;
      step->replacement.emplace(Replacement::parse(f, where, context));
    } else if (type == "ByteFallback") {
      step->kind = Step::ByteFallback;
    } else if (type == "Fuse") {
      step->kind = Step::Fuse;
    } else if (type == "Strip") {
      step->kind = Step::Strip;
      step->strip = f.string_or("content", " ");
      size_t pos = 0;
      if (step->strip.empty() || next_code_point(step->strip, pos) < 0 || pos != step->strip.size())
        f.error("content", "must be exactly one character");
      step->start = static_cast<size_t>(f.integer_or("start", 0, 0, 1 << 20));
      step->stop = static_cast<size_t>(f.integer_or("stop", 0, 0, 1 << 20));
    } else {
      fail(where, context + "type: unsupported decoder '" + type +
                      "' (supported: Sequence, ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip)");
    }
    d.steps_.push_back(std::move(step));
  };
  add(add, spec, "decoder.");
  return d;
}

std::string Decoder::decode(std::vector<std::string> tokens) const {
  if (steps_.empty()) {  // the library joins with spaces when there is no decoder
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
    return out;
  }
  for (const auto& s : steps_) {
    switch (s->kind) {
      case Step::ByteLevel: {
        std::string bytes;
        for (const auto& t : tokens) {
          if (auto b = token_symbols_to_bytes(t)) bytes += *b;
          else bytes += t;
        }
        tokens.assign(1, lossy_utf8(bytes));
        break;
      }
      case Step::Metaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          // The library drops every replacement character of the first token (not only a
          // leading one) unless the scheme is "never"; elsewhere each becomes a space.
          const bool drop = i == 0 && s->prepend != PrependScheme::Never;
          tokens[i] = replace_all(tokens[i], s->content, drop ? "" : " ");
        }
        break;
      case Step::Replace:
        for (auto& t : tokens) t = s->replacement->apply(t);
        break;
      case Step::ByteFallback: {
        std::vector<std::string> out;
        std::string bytes;
        size_t count = 0;
        auto flush = [&] {
          if (count == 0) return;
          if (valid_utf8(bytes)) out.push_back(bytes);
          else
            for (size_t i = 0; i < count; ++i) out.emplace_back("\xEF\xBF\xBD");
          bytes.clear();
          count = 0;
        };
        for (auto& t : tokens) {
          if (auto b = byte_token(t)) {
            bytes += static_cast<char>(*b);
            ++count;
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        tokens.swap(out);
        break;
      }
      case Step::Fuse: {
        std::string joined;
        for (const auto& t : tokens) joined += t;
        tokens.assign(1, std::move(joined));
        break;
      }
      case Step::Strip:
        for (auto& t : tokens) {
          // Up to `start` leading and `stop` trailing copies of the character, counted in characters.
          const std::string& c = s->strip;
          size_t b = 0, e = t.size();
          for (size_t i = 0; i < s->start && t.compare(b, c.size(), c) == 0 && b + c.size() <= e; ++i) b += c.size();
          for (size_t i = 0; i < s->stop && e >= b + c.size() && t.compare(e - c.size(), c.size(), c) == 0; ++i)
            e -= c.size();
          t = t.substr(b, e - b);
        }
        break;
    }
  }
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

}  // namespace anvil::tokenizer
