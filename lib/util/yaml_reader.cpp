#include "util/yaml_reader.h"

#include <yaml-cpp/eventhandler.h>

#include <charconv>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <vector>

#include "util/error.h"

namespace anvil::util {
namespace {

// Walks the parser's events once, counting the nodes the document would have with every alias
// expanded (an alias costs the size of the node its anchor names) and the nesting depth, so a
// document of exponential expansion is refused in time linear in its text.
class ExpansionCounter : public YAML::EventHandler {
 public:
  explicit ExpansionCounter(const YamlLimits& limits) : limits_(limits) {}
  bool over_depth = false, over_size = false, cycle = false;
  // A key given twice in one mapping: YAML forbids it, and readers disagree on which one wins.
  std::optional<std::pair<std::string, int>> duplicate;  // key, line

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    key(nullptr, mark);
    leaf(anchor);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    key(nullptr, mark);
    // An alias to a node still being read is a cycle (yaml-cpp registers the anchor first):
    // every reader that walks it would recurse forever.
    for (const Open& o : stack_)
      if (o.anchor == anchor) cycle = true;
    auto it = sizes_.find(anchor);
    add(it == sizes_.end() ? 1 : it->second);
  }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, const std::string& value) override {
    key(&value, mark);
    leaf(anchor);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    key(nullptr, mark);
    open(anchor, false);
  }
  void OnSequenceEnd() override { close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    key(nullptr, mark);
    open(anchor, true);
  }
  void OnMapEnd() override { close(); }

 private:
  struct Open {
    YAML::anchor_t anchor;
    int64_t size;
    bool is_map;
    int64_t children = 0;
    std::set<std::string> keys;
  };
  // Called for every node before it is counted: in a mapping, even positions are keys.
  void key(const std::string* scalar, const YAML::Mark& mark) {
    if (stack_.empty() || !stack_.back().is_map) return;
    Open& map = stack_.back();
    if (map.children++ % 2 != 0 || !scalar) return;
    if (!map.keys.insert(*scalar).second && !duplicate) duplicate = std::make_pair(*scalar, mark.line + 1);
  }
  void add(int64_t n) {
    if (stack_.empty()) total_ = std::min<int64_t>(total_ + n, INT64_MAX / 4);
    else stack_.back().size = std::min<int64_t>(stack_.back().size + n, INT64_MAX / 4);
    if (total_ > limits_.max_expanded_nodes || (!stack_.empty() && stack_.back().size > limits_.max_expanded_nodes))
      over_size = true;
  }
  void leaf(YAML::anchor_t anchor) {
    if (anchor) sizes_[anchor] = 1;
    add(1);
  }
  void open(YAML::anchor_t anchor, bool is_map) {
    stack_.push_back({anchor, 1, is_map});
    if (static_cast<int>(stack_.size()) > limits_.max_depth) over_depth = true;
  }
  void close() {
    if (stack_.empty()) return;
    Open done = std::move(stack_.back());
    stack_.pop_back();
    if (done.anchor) sizes_[done.anchor] = done.size;
    add(done.size);
  }

  YamlLimits limits_;
  std::vector<Open> stack_;
  std::map<YAML::anchor_t, int64_t> sizes_;
  int64_t total_ = 0;
};

// The whole of `s` as a T (an optional leading '+' allowed), or nothing.
template <typename T>
std::optional<T> parse_whole(const std::string& s) {
  T v{};
  const char* begin = s.data() + (s.starts_with('+') ? 1 : 0);
  if (begin != s.data() && s.size() > 1 && (s[1] == '-' || s[1] == '+')) return std::nullopt;  // "+-5"
  auto [end, ec] = std::from_chars(begin, s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || begin == end) return std::nullopt;
  return v;
}

std::string line_of(const YAML::Mark& mark) { return mark.line >= 0 ? " at line " + std::to_string(mark.line + 1) : ""; }

}  // namespace

YAML::Node load_yaml(const std::string& text, const std::string& where, const YamlLimits& limits) {
  try {
    std::istringstream in(text);
    YAML::Parser parser(in);
    ExpansionCounter counter(limits);
    // Only the first document is loaded (YAML::Load), so only it is checked.
    parser.HandleNextDocument(counter);
    if (counter.cycle) fail(where, "an alias refers to the node that contains it (a cycle)");
    if (counter.over_depth)
      fail(where, "nests deeper than " + std::to_string(limits.max_depth) + " levels");
    if (counter.duplicate)
      fail(where + ":" + std::to_string(counter.duplicate->second),
           "key '" + counter.duplicate->first + "' is given twice in one mapping");
    if (counter.over_size)
      fail(where, "expands (through anchors and aliases) to more than " + std::to_string(limits.max_expanded_nodes) +
                      " nodes");
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail(where, "not valid YAML (" + e.msg + line_of(e.mark) + ")");
  }
}

void YamlReader::error(const YAML::Node& node, const std::string& what) const {
  std::string loc = where_.string();
  if (node.IsDefined() && node.Mark().line >= 0) loc += ":" + std::to_string(node.Mark().line + 1);
  fail(loc, what);
}

void YamlReader::only_keys(const YAML::Node& map, const std::set<std::string>& allowed, const std::string& context) const {
  if (!map.IsMap()) error(map, context + " must be a mapping");
  for (const auto& kv : map) {
    if (!kv.first.IsScalar()) error(kv.first, "a key in " + context + " must be a plain string");
    const std::string& key = kv.first.Scalar();
    if (allowed.count(key)) continue;
    std::string list;
    for (const auto& k : allowed) list += (list.empty() ? "" : ", ") + k;
    error(kv.first, "unsupported key '" + key + "' in " + context + " (supported: " + list + ")");
  }
}

std::string YamlReader::string(const YAML::Node& n, const std::string& key) const {
  if (!n.IsScalar()) error(n, "'" + key + "' must be a string");
  return n.Scalar();
}

bool YamlReader::boolean(const YAML::Node& n, const std::string& key) const {
  if (n.IsScalar()) {
    const std::string& s = n.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
  }
  error(n, "'" + key + "' must be true or false" + (n.IsScalar() ? ", not '" + n.Scalar() + "'" : ""));
}

int64_t YamlReader::integer(const YAML::Node& n, const std::string& key) const {
  if (auto v = n.IsScalar() ? parse_whole<int64_t>(n.Scalar()) : std::nullopt) return *v;
  error(n, "'" + key + "' must be an integer" + (n.IsScalar() ? ", not '" + n.Scalar() + "'" : ""));
}

double YamlReader::number(const YAML::Node& n, const std::string& key) const {
  if (auto v = n.IsScalar() ? parse_whole<double>(n.Scalar()) : std::nullopt) {
    if (!std::isfinite(*v)) error(n, "'" + key + "' must be a finite number, not '" + n.Scalar() + "'");
    return *v;
  }
  error(n, "'" + key + "' must be a number" + (n.IsScalar() ? ", not '" + n.Scalar() + "'" : ""));
}

void YamlReader::read(const YAML::Node& map, const std::string& key, std::string& out) const {
  if (const YAML::Node n = map[key]; n && !n.IsNull()) out = string(n, key);
}
void YamlReader::read(const YAML::Node& map, const std::string& key, bool& out) const {
  if (const YAML::Node n = map[key]; n && !n.IsNull()) out = boolean(n, key);
}
void YamlReader::read(const YAML::Node& map, const std::string& key, int64_t& out, int64_t min, int64_t max) const {
  const YAML::Node n = map[key];
  if (!n || n.IsNull()) return;
  out = integer(n, key);
  if (out < min || out > max)
    error(n, "'" + key + "' must be in [" + std::to_string(min) + ", " + std::to_string(max) + "], not " +
                 std::to_string(out));
}
void YamlReader::read(const YAML::Node& map, const std::string& key, double& out, double lo, double hi) const {
  const YAML::Node n = map[key];
  if (!n || n.IsNull()) return;
  out = number(n, key);
  if (!(out >= lo && out <= hi)) {
    std::ostringstream s;
    s << "'" << key << "' must be in [" << lo << ", " << hi << "], not " << out;
    error(n, s.str());
  }
}
void YamlReader::choice(const YAML::Node& map, const std::string& key, std::string& out, const std::set<std::string>& ok) const {
  read(map, key, out);
  if (ok.count(out)) return;
  std::string list;
  for (const auto& k : ok) list += (list.empty() ? "" : ", ") + k;
  error(map[key] ? map[key] : map, "'" + key + "' must be one of " + list + ", not '" + out + "'");
}

}  // namespace anvil::util
