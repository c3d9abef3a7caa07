#include "io/model_card.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <set>

#include "io/atomic_file.h"
#include "util/error.h"

namespace anvil::io {
namespace {

// A YAML double-quoted scalar: every string is written this way, so that no value (a path with
// a colon, "yes", "1e5") is read back as another type.
std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') out += '\\', out += static_cast<char>(c);
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else out += static_cast<char>(c);
  }
  return out + "\"";
}

void list(std::string& out, const char* key, const std::vector<std::string>& values) {
  if (values.empty()) return;
  out += std::string(key) + ":\n";
  for (const auto& v : values) out += "- " + quoted(v) + "\n";
}

std::string human(uint64_t bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  double b = static_cast<double>(bytes);
  int u = 0;
  while (b >= 1000 && u < 4) b /= 1000, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

std::vector<std::string> strings_of(const YAML::Node& n) {
  std::vector<std::string> out;
  if (!n) return out;
  if (n.IsScalar()) out.push_back(n.as<std::string>());
  else if (n.IsSequence())
    for (const auto& v : n)
      if (v.IsScalar()) out.push_back(v.as<std::string>());
  return out;
}

// The YAML between a leading "---" line and the next "---" line, or "" when there is none.
std::string front_matter(const std::string& text) {
  if (text.rfind("---\n", 0) != 0 && text.rfind("---\r\n", 0) != 0) return "";
  const size_t start = text.find('\n') + 1;
  for (size_t at = start; at < text.size();) {
    const size_t end = text.find('\n', at);
    const std::string line = text.substr(at, end == std::string::npos ? std::string::npos : end - at);
    if (line == "---" || line == "---\r") return text.substr(start, at - start);
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return "";
}

}  // namespace

std::string render_model_card(const ModelCard& c) {
  std::string out = "---\n";
  list(out, "base_model", c.front.base_model);
  if (!c.front.base_model_relation.empty()) out += "base_model_relation: " + c.front.base_model_relation + "\n";
  out += "library_name: " + c.front.library_name + "\n";
  if (c.front.license) out += "license: " + quoted(*c.front.license) + "\n";
  list(out, "datasets", c.front.datasets);
  list(out, "tags", c.front.tags);
  out += "pipeline_tag: " + c.front.pipeline_tag + "\n";
  out += "---\n\n";
  out += "# " + c.title + "\n\n" + c.summary + "\n\n";
  if (!c.measurements.empty()) {
    const bool compared = std::any_of(c.measurements.begin(), c.measurements.end(), [](const auto& m) { return m.kl.has_value(); });
    out += "## Measured\n\n| model | data | perplexity |" + std::string(compared ? " KL divergence | top-1 agreement |" : "") + "\n";
    out += "|---|---|---:|" + std::string(compared ? "---:|---:|" : "") + "\n";
    for (const auto& m : c.measurements) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "| %s | %s | %.4f |", m.model.c_str(), m.data.c_str(), m.perplexity);
      out += buf;
      if (compared) {
        if (m.kl && m.top1) std::snprintf(buf, sizeof buf, " %.5f | %.2f%% |", *m.kl, 100 * *m.top1);
        else std::snprintf(buf, sizeof buf, " | |");
        out += buf;
      }
      out += "\n";
    }
    out += "\n";
  }
  out += "## Made with anvil " + c.version + "\n\n```sh\n" + c.command + "\n```\n\n";
  if (!c.config.empty()) out += "```" + c.config_language + "\n" + c.config + (c.config.ends_with('\n') ? "" : "\n") + "```\n\n";
  out += "Output: " + human(c.output_bytes);
  if (c.bits_per_weight) {
    char buf[48];
    std::snprintf(buf, sizeof buf, ", %.2f bits per weight", *c.bits_per_weight);
    out += buf;
  }
  out += ".\n\n## Inputs\n\n";
  // The inputs' own lineage, from their cards: the tree continues past them.
  for (const auto& in : c.inputs)
    if (in.card && !in.card->base_model.empty()) {
      std::string from;
      for (const auto& b : in.card->base_model) from += (from.empty() ? "" : ", ") + b;
      out += "- " + in.name + " was made from " + from + (in.card->base_model_relation.empty() ? "" : " (" + in.card->base_model_relation + ")") + "\n";
    }
  out += "\n| input | file | size | SHA-256 |\n|---|---|---:|---|\n";
  for (const auto& in : c.inputs)
    for (const auto& f : in.files)
      out += "| " + in.role + ": " + in.name + " | " + f.path.filename().string() + " | " + human(f.bytes) + " | `" + f.sha256 + "` |\n";
  if (!c.notes.empty()) {
    out += "\n";
    for (const auto& n : c.notes) out += "Note: " + n + "\n";
  }
  return out;
}

std::optional<CardFront> read_card_front(const std::filesystem::path& model_path) {
  const auto file = is_directory_quietly(model_path) ? model_path / "README.md" : std::filesystem::path();
  if (file.empty() || !exists_quietly(file)) return std::nullopt;
  const std::string yaml = front_matter(read_text_file(file));
  if (yaml.empty()) return std::nullopt;
  YAML::Node n;
  try {
    n = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    fail(file.string(), "its front matter is not YAML (" + std::string(e.what()) + ")");
  }
  if (!n.IsMap()) return std::nullopt;
  CardFront f;
  try {
    f.base_model = strings_of(n["base_model"]);
    if (n["base_model_relation"] && n["base_model_relation"].IsScalar()) f.base_model_relation = n["base_model_relation"].as<std::string>();
    if (n["library_name"] && n["library_name"].IsScalar()) f.library_name = n["library_name"].as<std::string>();
    f.tags = strings_of(n["tags"]);
    if (n["license"] && n["license"].IsScalar()) f.license = n["license"].as<std::string>();
    f.datasets = strings_of(n["datasets"]);
  } catch (const YAML::Exception& e) {
    fail(file.string(), "front matter: " + std::string(e.what()));
  }
  return f;
}

std::vector<std::string> read_card_measured(const std::filesystem::path& model_path) {
  std::vector<std::string> out;
  const auto file = model_path / "README.md";
  if (!is_directory_quietly(model_path) || !exists_quietly(file)) return out;
  const std::string text = read_text_file(file);
  size_t at = text.find("\n## Measured\n");
  if (at == std::string::npos) return out;
  at = text.find('\n', at + 1) + 1;
  while (at < text.size()) {
    const size_t end = text.find('\n', at);
    const std::string line = text.substr(at, end == std::string::npos ? std::string::npos : end - at);
    if (line.rfind("#", 0) == 0) break;
    if (line.rfind("|", 0) == 0) out.push_back(line);
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return out;
}

std::string card_name_of(const std::filesystem::path& model_path) {
  // The Hub's cards carry no id of their own; the path is what the user gave.
  return model_path.lexically_normal().string();
}

void inherit_from_inputs(ModelCard& card, const std::vector<std::string>& tags) {
  std::set<std::string> seen_tags;
  std::set<std::string> licenses;
  bool every_input_has_license = true;
  card.front.base_model.clear();
  for (const auto& in : card.inputs) {
    if (in.role == "data" || in.role == "validation") continue;
    if (std::find(card.front.base_model.begin(), card.front.base_model.end(), in.name) == card.front.base_model.end())
      card.front.base_model.push_back(in.name);
    if (in.card && in.card->license) licenses.insert(*in.card->license);
    else every_input_has_license = false;
  }
  if (licenses.size() == 1 && every_input_has_license) card.front.license = *licenses.begin();
  else if (!licenses.empty())
    card.notes.push_back("the inputs' licenses differ or are not all stated, so this card states none; check each input's");
  auto add = [&](const std::string& t) {
    if (seen_tags.insert(t).second) card.front.tags.push_back(t);
  };
  for (const auto& t : tags) add(t);
  for (const auto& in : card.inputs)
    if (in.card)
      for (const auto& t : in.card->tags) add(t);
}

std::string command_line(int argc, char** argv) {
  std::string out;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    const bool plain = !a.empty() && a.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@") == std::string::npos;
    if (!plain) {
      std::string q = "'";
      for (char ch : a) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
      a = q + "'";
    }
    out += (i ? " " : "") + a;
  }
  return out;
}

}  // namespace anvil::io
