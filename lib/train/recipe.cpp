#include "train/recipe.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <set>

#include "util/error.h"

namespace anvil::train {
namespace fs = std::filesystem;

double LoraSpec::scale() const { return rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / r; }

namespace {

struct Reader {
  fs::path where;

  [[noreturn]] void error(const YAML::Node& node, const std::string& what) const {
    std::string loc = where.string();
    if (node.IsDefined() && node.Mark().line >= 0) loc += ":" + std::to_string(node.Mark().line + 1);
    fail(loc, what);
  }

  void only_keys(const YAML::Node& map, const std::set<std::string>& allowed, const std::string& context) const {
    if (!map.IsMap()) error(map, context + " must be a mapping");
    for (const auto& kv : map) {
      auto key = kv.first.as<std::string>();
      if (allowed.count(key)) continue;
      std::string list;
      for (const auto& k : allowed) list += (list.empty() ? "" : ", ") + k;
      error(kv.first, "unknown key '" + key + "' in " + context + " (known: " + list + ")");
    }
  }

  template <typename T>
  T get(const YAML::Node& n, const std::string& key, const char* type_name) const {
    if (!n.IsScalar()) error(n, "'" + key + "' must be " + type_name);
    try {
      return n.as<T>();
    } catch (const YAML::Exception&) {
      error(n, "'" + key + "' must be " + type_name + ", not '" + n.Scalar() + "'");
    }
  }
  template <typename T>
  void read(const YAML::Node& map, const std::string& key, T& out, const char* type_name) const {
    if (const YAML::Node n = map[key]; n && !n.IsNull()) out = get<T>(n, key, type_name);
  }
  void integer(const YAML::Node& map, const std::string& key, int64_t& out, int64_t min) const {
    read(map, key, out, "an integer");
    if (out < min) error(map[key], "'" + key + "' must be at least " + std::to_string(min));
  }
  void number(const YAML::Node& map, const std::string& key, double& out, double lo, double hi) const {
    read(map, key, out, "a number");
    if (!(out >= lo && out <= hi))
      error(map[key], "'" + key + "' must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  void choice(const YAML::Node& map, const std::string& key, std::string& out, const std::set<std::string>& ok) const {
    read(map, key, out, "a string");
    if (ok.count(out)) return;
    std::string list;
    for (const auto& k : ok) list += (list.empty() ? "" : ", ") + k;
    error(map[key] ? map[key] : map, "'" + key + "' must be one of " + list + ", not '" + out + "'");
  }

  // Paths are taken relative to the working directory, or else to the recipe's own directory.
  fs::path existing(const YAML::Node& n, const std::string& key, const std::string& what) const {
    auto p = fs::path(get<std::string>(n, key, "a path"));
    if (p.is_relative() && !fs::exists(p) && fs::exists(where.parent_path() / p)) p = where.parent_path() / p;
    if (!fs::exists(p)) error(n, what + " '" + p.string() + "' not found");
    return p;
  }

  DataSource source(const YAML::Node& n, const std::string& context) const {
    only_keys(n, {"path", "type", "sampling"}, context);
    if (!n["path"]) error(n, context + " needs a 'path'");
    DataSource s;
    s.path = existing(n["path"], "path", "data file");
    if (fs::is_directory(s.path)) error(n["path"], "data file '" + s.path.string() + "' is a directory");
    choice(n, "type", s.type, {"raw", "text", "prompt_completion", "chat"});
    choice(n, "sampling", s.sampling, {"random", "sequential"});
    if (n["sampling"] && s.type != "raw") error(n["sampling"], "'sampling' applies to type: raw only");
    return s;
  }
};

void apply_override(YAML::Node& root, const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) fail("--set", "'" + assignment + "' is not key=value");
  std::string path = assignment.substr(0, eq);
  YAML::Node value;
  try {
    value = YAML::Load(assignment.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    fail("--set", "'" + assignment + "': value is not valid YAML");
  }
  // yaml-cpp's operator[] returns handles that share the tree, so walking with copies edits root.
  std::vector<std::string> keys;
  for (size_t start = 0;;) {
    auto dot = path.find('.', start);
    keys.push_back(path.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  std::vector<YAML::Node> chain{root};
  for (size_t i = 0; i + 1 < keys.size(); ++i) {
    YAML::Node next = chain.back()[keys[i]];
    if (!next.IsDefined() || next.IsNull()) {
      chain.back()[keys[i]] = YAML::Node(YAML::NodeType::Map);
      next = chain.back()[keys[i]];
    }
    if (!next.IsMap()) fail("--set", "'" + path + "': '" + keys[i] + "' is not a mapping");
    chain.push_back(next);
  }
  chain.back()[keys.back()] = value;
}

}  // namespace

Recipe load_recipe(const fs::path& yaml_file, const std::vector<std::string>& overrides) {
  if (!fs::exists(yaml_file)) fail(yaml_file.string(), "not found");
  YAML::Node root;
  try {
    root = YAML::LoadFile(yaml_file.string());
  } catch (const YAML::Exception& e) {
    fail(yaml_file.string(), "not valid YAML (" + e.msg + " at line " + std::to_string(e.mark.line + 1) + ")");
  }
  if (!root.IsMap()) fail(yaml_file.string(), "a recipe must be a YAML mapping");
  for (const auto& o : overrides) apply_override(root, o);

  Reader r{yaml_file};
  Recipe c;
  c.file = yaml_file;
  r.only_keys(root,
              {"base_model", "output_dir", "datasets", "val_dataset", "val_split", "val_max_examples", "sequence_len",
               "sample_packing", "shuffle", "chat_template", "lora", "optimizer", "max_grad_norm", "lr_scheduler",
               "warmup_steps", "max_steps", "num_epochs", "micro_batch_size", "gradient_accumulation_steps", "seed",
               "precision", "gradient_checkpointing", "eval_steps", "save_steps", "logging_steps", "device",
               "threads"},
              "the recipe");
  if (!root["base_model"]) r.error(root, "missing 'base_model'");
  c.base_model = r.existing(root["base_model"], "base_model", "base model");
  if (!fs::exists(c.base_model / "config.json")) r.error(root["base_model"], "base model has no config.json");
  if (!root["output_dir"]) r.error(root, "missing 'output_dir'");
  c.output_dir = r.get<std::string>(root["output_dir"], "output_dir", "a path");

  const YAML::Node ds = root["datasets"];
  if (!ds || !ds.IsSequence() || ds.size() == 0) r.error(ds ? ds : root, "'datasets' must be a non-empty list");
  for (size_t i = 0; i < ds.size(); ++i) c.datasets.push_back(r.source(ds[i], "datasets[" + std::to_string(i) + "]"));
  if (root["val_dataset"] && !root["val_dataset"].IsNull()) c.val_dataset = r.source(root["val_dataset"], "val_dataset");
  r.number(root, "val_split", c.val_split, 0, 0.5);
  if (c.val_dataset && c.val_split > 0) r.error(root["val_split"], "give either val_dataset or val_split, not both");
  r.integer(root, "val_max_examples", c.val_max_examples, 0);
  r.integer(root, "sequence_len", c.sequence_len, 2);
  r.read(root, "sample_packing", c.sample_packing, "true or false");
  r.read(root, "shuffle", c.shuffle, "true or false");
  r.choice(root, "chat_template", c.chat_template, {"chatml"});

  if (const YAML::Node l = root["lora"]; l && !l.IsNull()) {
    r.only_keys(l, {"r", "alpha", "dropout", "target_modules", "rslora"}, "lora");
    r.integer(l, "r", c.lora.r, 1);
    c.lora.alpha = static_cast<double>(c.lora.r) * 2;
    r.number(l, "alpha", c.lora.alpha, 1e-9, 1e9);
    r.number(l, "dropout", c.lora.dropout, 0, 0.99);
    r.read(l, "rslora", c.lora.rslora, "true or false");
    if (const YAML::Node t = l["target_modules"]; t && !t.IsNull()) {
      c.lora.target_modules.clear();
      if (t.IsScalar()) c.lora.target_modules.push_back(t.Scalar());
      else if (t.IsSequence() && t.size() > 0)
        for (const auto& m : t) c.lora.target_modules.push_back(r.get<std::string>(m, "target_modules", "a string"));
      else r.error(t, "'target_modules' must be 'all-linear' or a non-empty list of module names");
    }
  }
  if (const YAML::Node o = root["optimizer"]; o && !o.IsNull()) {
    r.only_keys(o, {"name", "lr", "betas", "weight_decay", "eps"}, "optimizer");
    std::string name = "adamw";
    r.choice(o, "name", name, {"adamw"});
    r.number(o, "lr", c.optimizer.lr, 0, 10);
    r.number(o, "weight_decay", c.optimizer.weight_decay, 0, 10);
    r.number(o, "eps", c.optimizer.eps, 0, 1);
    if (const YAML::Node b = o["betas"]; b && !b.IsNull()) {
      if (!b.IsSequence() || b.size() != 2) r.error(b, "'betas' must be a list of two numbers");
      c.optimizer.beta1 = r.get<double>(b[0], "betas", "a number");
      c.optimizer.beta2 = r.get<double>(b[1], "betas", "a number");
      if (!(c.optimizer.beta1 >= 0 && c.optimizer.beta1 < 1 && c.optimizer.beta2 >= 0 && c.optimizer.beta2 < 1))
        r.error(b, "'betas' must be in [0, 1)");
    }
  }
  r.number(root, "max_grad_norm", c.max_grad_norm, 0, 1e9);
  r.choice(root, "lr_scheduler", c.lr_scheduler, {"cosine", "linear", "constant"});
  r.integer(root, "warmup_steps", c.warmup_steps, 0);
  r.integer(root, "max_steps", c.max_steps, 0);
  r.number(root, "num_epochs", c.num_epochs, 0, 1e6);
  if ((c.max_steps > 0) == (c.num_epochs > 0)) r.error(root, "give exactly one of 'max_steps' and 'num_epochs'");
  r.integer(root, "micro_batch_size", c.micro_batch_size, 1);
  r.integer(root, "gradient_accumulation_steps", c.gradient_accumulation_steps, 1);
  r.read(root, "seed", c.seed, "a non-negative integer");
  r.choice(root, "precision", c.precision, {"fp32", "bf16"});
  r.read(root, "gradient_checkpointing", c.gradient_checkpointing, "true or false");
  r.integer(root, "eval_steps", c.eval_steps, 0);
  r.integer(root, "save_steps", c.save_steps, 0);
  r.integer(root, "logging_steps", c.logging_steps, 1);
  r.choice(root, "device", c.device, {"auto", "cpu", "cuda"});
  r.integer(root, "threads", c.threads, 0);
  return c;
}

}  // namespace anvil::train
