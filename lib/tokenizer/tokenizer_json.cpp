#include "tokenizer/tokenizer_json.h"

#include <limits>

#include "util/error.h"
#include "util/json_reader.h"

namespace anvil::tokenizer {
namespace {

using nlohmann::json;

// A SAX handler that builds the JSON tree itself, except that inside model.vocab and
// model.merges it appends to the flat lists.
class Reader {
 public:
  explicit Reader(TokenizerJson& out) : out_(out) {}
  std::string error;  // set when this handler (not the JSON grammar) stops the parse

  bool null() { return scalar(json(nullptr)); }
  bool boolean(bool v) { return scalar(json(v)); }
  bool number_integer(int64_t v) {
    if (mode_ == Mode::Vocab && depth_ == 1) return vocab_entry(v);
    return scalar(json(v));
  }
  bool number_unsigned(uint64_t v) {
    if (mode_ == Mode::Vocab && depth_ == 1)
      return vocab_entry(v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ? -1 : static_cast<int64_t>(v));
    return scalar(json(v));
  }
  bool number_float(double v, const std::string&) { return scalar(json(v)); }
  bool string(std::string& v) {
    if (mode_ == Mode::Merges) {
      if (depth_ == 1) {
        const size_t space = v.find(' ', 1);
        if (space == std::string::npos) return stop_merge("'" + v + "' is not two tokens");
        out_.merges.emplace_back(v.substr(0, space), v.substr(space + 1));
        return true;
      }
      if (depth_ == 2 && pair_size_ < 2) {
        (pair_size_++ == 0 ? pair_.first : pair_.second) = std::move(v);
        return true;
      }
      return stop_merge("not a pair of tokens");
    }
    return scalar(json(std::move(v)));
  }
  bool binary(json::binary_t&) { return false; }

  bool start_object(size_t) {
    if (mode_ == Mode::Vocab) return depth_ == 0 ? (++depth_, true) : stop_vocab();
    if (mode_ == Mode::Merges) return stop_merge("not a pair of tokens");
    if (next_ == Mode::Vocab) {
      mode_ = Mode::Vocab, next_ = Mode::Tree, depth_ = 0;
      out_.has_vocab = true;
      return start_object(0);
    }
    next_ = Mode::Tree;
    return open(json::object());
  }
  bool end_object() {
    if (mode_ == Mode::Vocab) {
      mode_ = Mode::Tree;
      return true;
    }
    stack_.pop_back();
    is_model_.pop_back();
    return true;
  }
  bool start_array(size_t) {
    if (mode_ == Mode::Vocab) return stop_vocab();
    if (mode_ == Mode::Merges) {
      if (depth_ != 1) return stop_merge("not a pair of tokens");
      depth_ = 2, pair_size_ = 0;
      return true;
    }
    if (next_ == Mode::Merges) {
      mode_ = Mode::Merges, next_ = Mode::Tree, depth_ = 1;
      out_.has_merges = true;
      return true;
    }
    next_ = Mode::Tree;
    return open(json::array());
  }
  bool end_array() {
    if (mode_ == Mode::Merges) {
      if (depth_ == 2) {
        if (pair_size_ != 2) return stop_merge("not a pair of tokens");
        out_.merges.push_back(std::move(pair_));
        depth_ = 1;
        return true;
      }
      mode_ = Mode::Tree;
      return true;
    }
    stack_.pop_back();
    is_model_.pop_back();
    return true;
  }
  bool key(std::string& k) {
    if (mode_ == Mode::Vocab) {
      key_ = std::move(k);
      return true;
    }
    // model.vocab / model.merges: keys of the "model" object directly inside the document.
    if (stack_.size() == 2 && is_model_.back()) {
      if (k == "vocab") next_ = Mode::Vocab;
      else if (k == "merges") next_ = Mode::Merges;
    }
    key_ = std::move(k);
    return true;
  }
  bool parse_error(size_t, const std::string&, const nlohmann::detail::exception& e) {
    if (error.empty()) error = std::string("not valid JSON (") + e.what() + ")";
    return false;
  }

 private:
  enum class Mode { Tree, Vocab, Merges };

  bool scalar(json v) {
    next_ = Mode::Tree;
    if (mode_ == Mode::Vocab) return stop_vocab();
    place(std::move(v));
    return true;
  }
  bool open(json container) {
    const bool is_model = stack_.size() == 1 && stack_.back()->is_object() && key_ == "model" && container.is_object();
    json* slot = place(std::move(container));
    stack_.push_back(slot);
    is_model_.push_back(is_model);
    return true;
  }
  json* place(json v) {
    if (stack_.empty()) {
      out_.rest = std::move(v);
      return &out_.rest;
    }
    json& parent = *stack_.back();
    if (parent.is_object()) {
      json& slot = parent[key_];
      slot = std::move(v);
      return &slot;
    }
    parent.push_back(std::move(v));
    return &parent.back();
  }
  bool vocab_entry(int64_t id) {
    out_.vocab.emplace_back(std::move(key_), id);
    return true;
  }
  bool stop_vocab() {
    error = "model.vocab['" + key_ + "']: not an integer id";
    return false;
  }
  bool stop_merge(const std::string& what) {
    error = "model.merges[" + std::to_string(out_.merges.size()) + "]: " + what;
    return false;
  }

  TokenizerJson& out_;
  std::vector<json*> stack_;
  std::string key_;
  Mode mode_ = Mode::Tree, next_ = Mode::Tree;
  int depth_ = 0;
  size_t pair_size_ = 0;
  std::pair<std::string, std::string> pair_;
  std::vector<bool> is_model_;  // per open container: is it the document's "model" object
};

}  // namespace

TokenizerJson read_tokenizer_json(std::string_view text, const std::string& where) {
  util::check_json_depth(text, where);
  TokenizerJson out;
  Reader reader(out);
  bool ok = false;
  try {
    ok = json::sax_parse(text.begin(), text.end(), &reader);
  } catch (const json::exception& e) {
    fail(where, std::string("not valid JSON (") + e.what() + ")");
  }
  if (!ok) fail(where, reader.error.empty() ? "not valid JSON" : reader.error);
  return out;
}

}  // namespace anvil::tokenizer
