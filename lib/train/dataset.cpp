#include "train/dataset.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <optional>

#include "chat/chat_template.h"
#include "chat/conversation.h"
#include "io/atomic_file.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/json_reader.h"

namespace anvil::train {
namespace {

struct Tokenized {
  std::vector<int32_t> stream;    // raw sources
  std::vector<Example> examples;  // JSONL sources
};

std::string field(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.contains(key)) fail(where, std::string("missing \"") + key + "\"");
  if (!j[key].is_string()) fail(where, std::string("\"") + key + "\" must be a string");
  return j[key].get<std::string>();
}

void append(Example& e, const std::vector<int32_t>& ids, bool trained) {
  e.ids.insert(e.ids.end(), ids.begin(), ids.end());
  e.trained.insert(e.trained.end(), ids.size(), trained ? 1 : 0);
}

// ChatML: "<|im_start|>role\ncontent<|im_end|>\n" per message; an assistant turn's content and
// its <|im_end|> are trained, everything else is context.
Example chatml(const nlohmann::json& messages, const tokenizer::Tokenizer& tok, const std::string& where) {
  if (!messages.is_array() || messages.empty()) fail(where, "\"messages\" must be a non-empty list");
  Example e;
  if (tok.adds_special_tokens()) append(e, tok.encode("", true), false);
  for (const auto& m : messages) {
    if (!m.is_object()) fail(where, "each message must be an object with \"role\" and \"content\"");
    std::string role = field(m, "role", where), content = field(m, "content", where);
    if (role != "system" && role != "user" && role != "assistant")
      fail(where, "unknown role '" + role + "' (system, user or assistant)");
    append(e, tok.encode("<|im_start|>" + role + "\n"), false);
    if (role == "assistant") {
      append(e, tok.encode(content + "<|im_end|>"), true);
      append(e, tok.encode("\n"), false);
    } else {
      append(e, tok.encode(content + "<|im_end|>\n"), false);
    }
  }
  return e;
}

// The base model's own template, rendered as transformers renders it; the loss covers each
// assistant turn: its content and the end-of-turn token after it (e.g. <|im_end|>, <|eot_id|>,
// <end_of_turn>, </s>), found by rendering the conversation's prefixes as axolotl does. Token
// boundaries come from tokenizing the text up to each edge: where the tokenizer merges across
// the turn's start, the shared token counts as context.
Example templated(const chat::ChatTemplate& tmpl, const chat::RenderOptions& options, const nlohmann::json& messages,
                  const tokenizer::Tokenizer& tok, const std::string& where) {
  if (!messages.is_array() || messages.empty()) fail(where, "\"messages\" must be a non-empty list");
  for (const auto& m : messages) {
    if (!m.is_object()) fail(where, "each message must be an object with \"role\" and \"content\"");
    field(m, "role", where);
    field(m, "content", where);
  }
  chat::RenderedConversation r;
  try {
    r = chat::render_with_turns(tmpl, messages, options);
  } catch (const chat::TemplateRaised& e) {
    fail(where, "the chat template refuses this conversation: " + e.problem());
  }
  Example e;
  e.ids = tok.encode(r.text, false);  // the template writes BOS and the other specials itself
  e.trained.assign(e.ids.size(), 0);
  // How many leading tokens of the whole are those of the text's first `bytes` alone, and how many
  // tokens that prefix has by itself.
  struct Boundary {
    size_t shared, prefix_tokens;
  };
  auto boundary = [&](size_t bytes) {
    const auto prefix = tok.encode(std::string_view(r.text).substr(0, bytes), false);
    size_t k = 0;
    while (k < prefix.size() && k < e.ids.size() && prefix[k] == e.ids[k]) ++k;
    return Boundary{k, prefix.size()};
  };
  for (const auto& turn : r.assistant_turns) {
    const size_t begin = boundary(turn.begin).shared;
    const Boundary content = boundary(turn.content_end);
    size_t end = std::max(begin, content.shared);
    // The tokenizer may have merged the content's last characters with what follows: that token
    // is the content's too.
    if (end < e.ids.size() && content.prefix_tokens > end) ++end;
    // Then the end-of-turn token: the first special or added token, past whitespace only.
    size_t t = end;
    while (t < e.ids.size() && !tok.is_special(e.ids[t]) && !tok.is_added(e.ids[t]) &&
           tok.decode(std::span<const int32_t>(&e.ids[t], 1), false).find_first_not_of(" \t\r\n") == std::string::npos)
      ++t;
    if (t < e.ids.size() && (tok.is_special(e.ids[t]) || tok.is_added(e.ids[t]))) end = t + 1;
    for (size_t k = begin; k < end; ++k) e.trained[k] = 1;
  }
  return e;
}

struct ChatRendering {
  const chat::ChatTemplate* tmpl = nullptr;  // null: built-in ChatML
  chat::RenderOptions options;
};

Tokenized tokenize(const DataSource& src, const tokenizer::Tokenizer& tok, SpecialTokens special,
                   const ChatRendering& chat) {
  Tokenized out;
  if (src.type == "raw") {
    out.stream = tok.encode_file(src.path, false);
    return out;
  }
  util::for_each_json_line(src.path, [&](const nlohmann::json& j, const std::string& where) {
    Example e;
    if (src.type == "text") {
      append(e, tok.encode(field(j, "text", where), true), true);
      if (!e.trained.empty()) e.trained[0] = 0;  // the first token has no context to predict it
    } else if (src.type == "prompt_completion") {
      append(e, tok.encode(field(j, "prompt", where), true), false);
      append(e, tok.encode(field(j, "completion", where), false), true);
    } else {
      if (!j.contains("messages")) fail(where, "missing \"messages\"");
      e = chat.tmpl ? templated(*chat.tmpl, chat.options, j["messages"], tok, where) : chatml(j["messages"], tok, where);
    }
    if (special.eos >= 0 && src.type != "chat") append(e, {special.eos}, e.trained.empty() || e.trained.back());
    out.examples.push_back(std::move(e));
  });
  return out;
}

// Only examples that leave something to learn within the first seq_len tokens.
bool usable(Example& e, int64_t seq_len) {
  if (static_cast<int64_t>(e.ids.size()) > seq_len) {
    e.ids.resize(seq_len);
    e.trained.resize(seq_len);
  }
  for (size_t t = 1; t < e.ids.size(); ++t)
    if (e.trained[t]) return true;
  return false;
}

// Packing: examples back to back, cut into rows of exactly seq_len tokens.
std::vector<Example> pack(const std::vector<Example>& examples, int64_t seq_len) {
  std::vector<Example> rows;
  Example cur;
  for (const auto& e : examples)
    for (size_t t = 0; t < e.ids.size(); ++t) {
      cur.ids.push_back(e.ids[t]);
      cur.trained.push_back(e.trained[t]);
      if (static_cast<int64_t>(cur.ids.size()) == seq_len) rows.push_back(std::exchange(cur, {}));
    }
  if (cur.ids.size() > 1) rows.push_back(std::move(cur));
  return rows;
}

void shuffle(std::vector<int64_t>& v, uint64_t seed) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[mix64(seed + i) % i]);
}

}  // namespace

uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

TrainingData::TrainingData(const Recipe& recipe, const tokenizer::Tokenizer& tok, SpecialTokens special)
    : seq_len_(recipe.sequence_len), seed_(recipe.seed), shuffle_(recipe.shuffle) {
  const int64_t L = seq_len_;
  // Chat data with chat_template "model": the base model's template, parsed once.
  std::optional<chat::ChatTemplate> tmpl;
  ChatRendering chat;
  const bool any_chat = std::any_of(recipe.datasets.begin(), recipe.datasets.end(), [](const DataSource& d) { return d.type == "chat"; }) ||
                        (recipe.val_dataset && recipe.val_dataset->type == "chat");
  if (any_chat && recipe.chat_template == "model") {
    const auto found = chat::find_chat_template(recipe.base_model);
    if (!found)
      fail(recipe.file.string(), "chat_template: model, but " + recipe.base_model.string() +
                                     " has no chat template (chat_template.jinja or tokenizer_config.json); say "
                                     "chat_template: chatml to use ChatML");
    tmpl.emplace(chat::ChatTemplate::parse(found->source, found->where));
    chat.tmpl = &*tmpl;
    chat.options.bos_token = found->bos_token;
    chat.options.eos_token = found->eos_token;
  }
  std::vector<Example> pooled;
  for (const auto& src : recipe.datasets) {
    Tokenized t = tokenize(src, tok, special, chat);
    const std::string file = src.path.string();
    if (src.type == "raw") {
      Stream s{std::move(t.stream), src.sampling == "random"};
      if (recipe.val_split > 0) {  // the tail of the text is held out
        auto keep = static_cast<size_t>(static_cast<double>(s.tokens.size()) * (1 - recipe.val_split));
        for (size_t o = keep; o + L <= s.tokens.size(); o += L) validation_.push_back(window(s, o));
        s.tokens.resize(keep);
      }
      const int64_t windows = static_cast<int64_t>(s.tokens.size()) / L;
      if (windows == 0)
        fail(file, "has " + std::to_string(s.tokens.size()) + " tokens, fewer than one sequence_len window (" +
                       std::to_string(L) + ")");
      for (int64_t w = 0; w < windows; ++w) items_.push_back({static_cast<int32_t>(streams_.size()), w});
      streams_.push_back(std::move(s));
      continue;
    }
    std::vector<Example> kept;
    for (auto& e : t.examples)
      if (usable(e, L) || recipe.sample_packing) kept.push_back(std::move(e));
    if (kept.empty()) fail(file, "has no usable example (none with a trained token)");
    if (recipe.val_split > 0) {  // a seeded random subset is held out
      std::vector<int64_t> order(kept.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
      shuffle(order, mix64(seed_ ^ 0x5EED));
      auto held = static_cast<size_t>(static_cast<double>(kept.size()) * recipe.val_split);
      if (held == kept.size()) fail(file, "val_split leaves no training example");
      std::vector<Example> train_part;
      for (size_t i = 0; i < order.size(); ++i)
        (i < held ? validation_ : train_part).push_back(std::move(kept[order[i]]));
      kept = std::move(train_part);
    }
    for (auto& e : kept) pooled.push_back(std::move(e));
  }
  if (recipe.sample_packing) pooled = pack(pooled, L);
  for (auto& e : pooled) {
    items_.push_back({-1, static_cast<int64_t>(examples_.size())});
    examples_.push_back(std::move(e));
  }
  if (items_.empty()) fail(recipe.file.string(), "the datasets have no usable example");

  if (recipe.val_dataset) {
    Tokenized t = tokenize(*recipe.val_dataset, tok, special, chat);
    if (!t.stream.empty()) {
      Stream s{std::move(t.stream), false};
      for (size_t o = 0; o + L <= s.tokens.size(); o += L) validation_.push_back(window(s, o));
    }
    for (auto& e : t.examples)
      if (usable(e, L)) validation_.push_back(std::move(e));
    if (validation_.empty()) fail(recipe.val_dataset->path.string(), "has no usable validation example");
  }
  if (recipe.val_max_examples > 0 && static_cast<int64_t>(validation_.size()) > recipe.val_max_examples)
    validation_.resize(recipe.val_max_examples);
}

Example TrainingData::window(const Stream& s, int64_t offset) const {
  Example e;
  e.ids.assign(s.tokens.begin() + offset, s.tokens.begin() + offset + seq_len_);
  e.trained.assign(seq_len_, 1);
  e.trained[0] = 0;
  return e;
}

Example TrainingData::draw(int64_t n) const {
  const int64_t size = epoch_size();
  const int64_t epoch = n / size;
  int64_t pos = n % size;
  if (shuffle_) {
    if (permutation_epoch_ != epoch) {
      permutation_.resize(size);
      for (int64_t i = 0; i < size; ++i) permutation_[i] = i;
      shuffle(permutation_, mix64(seed_ * 1000003 + static_cast<uint64_t>(epoch)));
      permutation_epoch_ = epoch;
    }
    pos = permutation_[pos];
  }
  const Item& item = items_[pos];
  if (item.stream < 0) return examples_[item.index];
  const Stream& s = streams_[item.stream];
  if (!s.random) return window(s, item.index * seq_len_);
  // A fresh random window for every draw.
  const uint64_t span = s.tokens.size() - seq_len_ + 1;
  return window(s, static_cast<int64_t>(mix64(seed_ ^ mix64(static_cast<uint64_t>(n) + 1)) % span));
}

int64_t TrainingData::training_tokens() const {
  int64_t n = 0;
  for (const auto& s : streams_) n += static_cast<int64_t>(s.tokens.size());
  for (const auto& e : examples_) n += static_cast<int64_t>(e.ids.size());
  return n;
}

std::string TrainingData::summary() const {
  return std::to_string(epoch_size()) + " training examples per epoch (" + std::to_string(training_tokens()) +
         " tokens), " + std::to_string(validation_.size()) + " validation examples";
}

}  // namespace anvil::train
