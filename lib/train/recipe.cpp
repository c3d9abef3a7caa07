#include "train/recipe.h"

#include <cmath>
#include <set>

#include "io/atomic_file.h"
#include "util/error.h"
#include "util/yaml_reader.h"

namespace anvil::train {
namespace fs = std::filesystem;

double LoraSpec::scale() const { return rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / r; }

namespace {

struct Reader : util::YamlReader {
  using YamlReader::YamlReader;

  void integer(const YAML::Node& map, const std::string& key, int64_t& out, int64_t min) const {
    read(map, key, out, min);
  }
  void number(const YAML::Node& map, const std::string& key, double& out, double lo, double hi) const {
    read(map, key, out, lo, hi);
  }
  using YamlReader::number;

  // Paths are taken relative to the working directory, or else to the recipe's own directory.
  fs::path existing(const YAML::Node& n, const std::string& key, const std::string& what) const {
    auto p = fs::path(string(n, key));
    if (p.is_relative() && !io::exists_quietly(p) && io::exists_quietly(where().parent_path() / p))
      p = where().parent_path() / p;
    if (!io::exists_quietly(p)) error(n, what + " '" + p.string() + "' not found");
    return p;
  }

  DataSource source(const YAML::Node& n, const std::string& context) const {
    only_keys(n, {"path", "type", "sampling"}, context);
    if (!n["path"]) error(n, context + " needs a 'path'");
    DataSource s;
    s.path = existing(n["path"], "path", "data file");
    if (io::is_directory_quietly(s.path)) error(n["path"], "data file '" + s.path.string() + "' is a directory");
    choice(n, "type", s.type, {"raw", "text", "prompt_completion", "chat"});
    choice(n, "sampling", s.sampling, {"random", "sequential"});
    if (n["sampling"] && s.type != "raw") error(n["sampling"], "'sampling' applies to type: raw only");
    return s;
  }
};

void apply_override(YAML::Node& root, const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) fail("override '" + assignment + "'", "not key=value");
  std::string path = assignment.substr(0, eq);
  YAML::Node value = util::load_yaml(assignment.substr(eq + 1), "override '" + assignment + "'");
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
    if (!next.IsMap()) fail("override '" + assignment + "'", "'" + keys[i] + "' is not a mapping");
    chain.push_back(next);
  }
  chain.back()[keys.back()] = value;
}

}  // namespace

Recipe load_recipe(const fs::path& yaml_file, const std::vector<std::string>& overrides) {
  if (!fs::exists(yaml_file)) fail(yaml_file.string(), "not found");
  YAML::Node root = util::load_yaml(io::read_text_file(yaml_file), yaml_file.string());
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
               "threads", "early_stopping_patience", "early_stopping_threshold", "load_best_model_at_end",
               "save_total_limit", "loraplus_lr_ratio", "neftune_noise_alpha"},
              "the recipe");
  if (!root["base_model"]) r.error(root, "missing 'base_model'");
  c.base_model = r.existing(root["base_model"], "base_model", "base model");
  if (!io::exists_quietly(c.base_model / "config.json")) r.error(root["base_model"], "base model has no config.json");
  if (!root["output_dir"]) r.error(root, "missing 'output_dir'");
  c.output_dir = r.string(root["output_dir"], "output_dir");

  const YAML::Node ds = root["datasets"];
  if (!ds || !ds.IsSequence() || ds.size() == 0) r.error(ds ? ds : root, "'datasets' must be a non-empty list");
  for (size_t i = 0; i < ds.size(); ++i) c.datasets.push_back(r.source(ds[i], "datasets[" + std::to_string(i) + "]"));
  if (root["val_dataset"] && !root["val_dataset"].IsNull()) c.val_dataset = r.source(root["val_dataset"], "val_dataset");
  r.number(root, "val_split", c.val_split, 0, 0.5);
  if (c.val_dataset && c.val_split > 0) r.error(root["val_split"], "give either val_dataset or val_split, not both");
  r.integer(root, "val_max_examples", c.val_max_examples, 0);
  r.integer(root, "sequence_len", c.sequence_len, 2);
  r.read(root, "sample_packing", c.sample_packing);
  r.read(root, "shuffle", c.shuffle);
  r.choice(root, "chat_template", c.chat_template, {"model", "chatml"});

  c.lora.where = yaml_file.string();
  if (const YAML::Node l = root["lora"]; l && !l.IsNull()) {
    r.only_keys(l, {"r", "alpha", "dropout", "target_modules", "rslora"}, "lora");
    r.integer(l, "r", c.lora.r, 1);
    c.lora.alpha = static_cast<double>(c.lora.r) * 2;
    r.number(l, "alpha", c.lora.alpha, 1e-9, 1e9);
    r.number(l, "dropout", c.lora.dropout, 0, 0.99);
    r.read(l, "rslora", c.lora.rslora);
    if (const YAML::Node t = l["target_modules"]; t && !t.IsNull()) {
      c.lora.target_modules.clear();
      if (t.IsScalar()) c.lora.target_modules.push_back(t.Scalar());
      else if (t.IsSequence() && t.size() > 0)
        for (const auto& m : t) c.lora.target_modules.push_back(r.string(m, "target_modules"));
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
      c.optimizer.beta1 = r.number(b[0], "betas");
      c.optimizer.beta2 = r.number(b[1], "betas");
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
  int64_t seed = static_cast<int64_t>(c.seed);
  r.read(root, "seed", seed, 0);
  c.seed = static_cast<uint64_t>(seed);
  r.choice(root, "precision", c.precision, {"fp32", "bf16"});
  r.read(root, "gradient_checkpointing", c.gradient_checkpointing);
  r.integer(root, "eval_steps", c.eval_steps, 0);
  r.integer(root, "save_steps", c.save_steps, 0);
  r.integer(root, "logging_steps", c.logging_steps, 1);
  r.choice(root, "device", c.device, {"auto", "cpu", "cuda"});
  r.integer(root, "threads", c.threads, 0);
  r.integer(root, "early_stopping_patience", c.early_stopping_patience, 0);
  r.number(root, "early_stopping_threshold", c.early_stopping_threshold, 0, 1e9);
  r.read(root, "load_best_model_at_end", c.load_best_model_at_end);
  r.integer(root, "save_total_limit", c.save_total_limit, 0);
  r.number(root, "loraplus_lr_ratio", c.loraplus_lr_ratio, 0, 1e6);
  r.number(root, "neftune_noise_alpha", c.neftune_noise_alpha, 0, 1e6);
  const bool has_val = c.val_dataset || c.val_split > 0;
  for (const char* key : {"early_stopping_patience", "load_best_model_at_end"}) {
    const bool on = std::string(key) == "early_stopping_patience" ? c.early_stopping_patience > 0
                                                                    : c.load_best_model_at_end;
    if (on && !has_val) r.error(root[key], std::string("'") + key + "' needs validation data (val_dataset or val_split)");
  }
  if (c.early_stopping_patience > 0 && c.eval_steps == 0)
    r.error(root["early_stopping_patience"], "'early_stopping_patience' counts evaluations: set eval_steps");
  return c;
}

}  // namespace anvil::train
