#include "merge/merge_search.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>

#include "eval/perplexity.h"
#include "io/atomic_file.h"
#include "merge/cma_es.h"
#include "merge/merge_method.h"
#include "model/config.h"
#include "model/tensor_bridge.h"
#include "model/transformer.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/yaml_reader.h"

namespace anvil::merge {
namespace fs = std::filesystem;
namespace {

fs::path resolve_next_to(const fs::path& spec, const std::string& p) {
  fs::path path(p);
  if (path.is_relative() && !io::exists_quietly(path) && io::exists_quietly(spec.parent_path() / path))
    path = spec.parent_path() / path;
  return fs::absolute(path).lexically_normal();
}

// One searched number: a parameter of one model entry (models[i]) or of the whole merge, at one
// gradient point.
struct Dimension {
  std::string param;
  int model = -1;  // index into the config's `models:`; -1 for a global parameter
  int64_t point = 0;
  double lo = 0, hi = 1;
  std::string label;
};

// The config's current value of a dimension as a point of its range (the search starts there).
double start_of(const YAML::Node& params, const Dimension& d, int64_t groups) {
  const double mid = 0.5;
  if (!params || !params.IsMap() || !params[d.param]) return mid;
  const YAML::Node v = params[d.param];
  auto unit = [&](const YAML::Node& n) {
    try {
      const double x = n.as<double>();
      return std::isfinite(x) ? std::clamp((x - d.lo) / (d.hi - d.lo), 0.0, 1.0) : mid;
    } catch (const YAML::Exception&) {
      return mid;
    }
  };
  if (v.IsScalar()) return unit(v);
  if (v.IsSequence() && static_cast<int64_t>(v.size()) == groups) return unit(v[static_cast<size_t>(d.point)]);
  return mid;
}

// The config with a trial's values: a number per parameter, or a gradient list of them.
std::string render(const YAML::Node& original, const std::vector<Dimension>& dims, const std::vector<double>& unit,
                   int64_t groups) {
  YAML::Node root = YAML::Clone(original);
  std::map<std::pair<int, std::string>, std::vector<double>> values;
  for (size_t i = 0; i < dims.size(); ++i) {
    auto& list = values[{dims[i].model, dims[i].param}];
    list.resize(static_cast<size_t>(groups));
    // Six significant digits: the YAML a user reads is the config that was evaluated.
    char text[32];
    std::snprintf(text, sizeof text, "%.6g", dims[i].lo + unit[i] * (dims[i].hi - dims[i].lo));
    list[static_cast<size_t>(dims[i].point)] = std::strtod(text, nullptr);
  }
  for (const auto& [key, list] : values) {
    YAML::Node owner = key.first < 0 ? root : root["models"][static_cast<size_t>(key.first)];
    // A fresh copy of the parameters: a YAML alias (parameters: *p) shares one node between
    // models, and assigning into it would set every model's value at once.
    const YAML::Node old = owner["parameters"];
    YAML::Node fresh = old && old.IsMap() ? YAML::Clone(old) : YAML::Node(YAML::NodeType::Map);
    owner.remove("parameters");
    owner["parameters"] = fresh;
    YAML::Node params = owner["parameters"];
    params.remove(key.second);
    auto number = [](double v) {
      char text[32];
      std::snprintf(text, sizeof text, "%.6g", v);
      return YAML::Node(std::string(text));
    };
    if (groups == 1) {
      params[key.second] = number(list[0]);
    } else {
      YAML::Node seq(YAML::NodeType::Sequence);
      for (double v : list) seq.push_back(number(v));
      seq.SetStyle(YAML::EmitterStyle::Flow);
      params[key.second] = seq;
    }
  }
  YAML::Emitter out;
  out.SetDoublePrecision(6);
  out << root;
  return std::string(out.c_str()) + "\n";
}

// A merged model held in memory: the bytes each tensor was handed over with.
struct MemoryModel {
  std::mutex mutex;
  std::map<std::string, std::pair<io::TensorSpec, std::vector<uint8_t>>> tensors;
};

double perplexity(const model::Transformer& m, const std::vector<int32_t>& tokens, const SearchSpec& spec, int threads) {
  eval::PerplexityOptions o;
  o.window = spec.window;
  o.threads = threads;
  return eval::evaluate_perplexity(m, tokens, o).perplexity;
}

}  // namespace

SearchSpec SearchSpec::load(const fs::path& path) {
  const std::string where = path.string();
  util::YamlReader r(path);
  const YAML::Node root = util::load_yaml(io::read_text_file(path), where);
  if (!root.IsMap()) fail(where, "a search spec must be a mapping (search, data, objective, budget, ...)");
  r.only_keys(root, {"search", "data", "objective", "layer_groups", "max_tokens", "window", "budget", "population",
                     "sigma", "seed"},
              "a search spec");
  SearchSpec s;
  s.source = path;
  const YAML::Node search = root["search"];
  if (!search || !search.IsMap() || search.size() == 0)
    fail(where, "'search' must map parameter names to ranges, e.g. weight: [0.2, 1.0]");
  for (const auto& kv : search) {
    SearchRange range;
    range.name = r.string(kv.first, "a parameter name");
    if (!kv.second.IsSequence() || kv.second.size() != 2) r.error(kv.second, range.name + " must be a range [low, high]");
    range.lo = r.number(kv.second[0], range.name);
    range.hi = r.number(kv.second[1], range.name);
    if (!(range.lo < range.hi)) r.error(kv.second, range.name + ": the range must have low < high");
    s.ranges.push_back(range);
  }
  const YAML::Node data = root["data"];
  if (!data || !data.IsSequence() || data.size() == 0)
    fail(where, "'data' must list validation files (each: file, and optionally a reference model)");
  for (const auto& d : data) {
    if (!d.IsMap()) r.error(d, "a data entry must be a mapping (file, reference)");
    r.only_keys(d, {"file", "reference"}, "a data entry");
    if (!d["file"]) r.error(d, "missing 'file'");
    SearchFile f;
    f.data = resolve_next_to(path, r.string(d["file"], "file"));
    if (!io::is_regular_file_quietly(f.data)) r.error(d["file"], "data file '" + d["file"].Scalar() + "' does not exist");
    if (d["reference"] && !d["reference"].IsNull()) {
      f.reference = resolve_next_to(path, r.string(d["reference"], "reference"));
      if (!io::is_directory_quietly(*f.reference))
        r.error(d["reference"], "reference model '" + d["reference"].Scalar() + "' is not a model directory");
    }
    s.files.push_back(f);
  }
  std::string objective = "worst_ratio";
  r.choice(root, "objective", objective, {"worst_ratio", "mean_ratio"});
  s.objective = objective == "worst_ratio" ? SearchObjective::WorstRatio : SearchObjective::MeanRatio;
  r.read(root, "layer_groups", s.layer_groups, 1, 64);
  r.read(root, "max_tokens", s.max_tokens, 16, int64_t{1} << 30);
  r.read(root, "window", s.window, 8, 1 << 20);
  r.read(root, "budget", s.budget, 1, 100'000);
  r.read(root, "population", s.population, 0, 1000);
  r.read(root, "sigma", s.sigma, 1e-4, 1.0);
  int64_t seed = 0;
  r.read(root, "seed", seed, 0);
  s.seed = static_cast<uint64_t>(seed);
  return s;
}

SearchResult run_merge_search(const fs::path& config_path, const SearchSpec& spec, const SearchOptions& options) {
  c10::InferenceMode guard;
  const std::string where = config_path.string();
  const YAML::Node original = util::load_yaml(io::read_text_file(config_path), where);
  const MergeConfig config = MergeConfig::parse(io::read_text_file(config_path), config_path);
  const MergeMethod* method = find_merge_method(config.merge_method);
  if (!method) fail(where, "unknown merge_method '" + config.merge_method + "'");
  if (!config.from_models && !spec.ranges.empty())
    fail(where, "a search needs a config written with models: (slices: are not searched)");

  // The dimensions: each range, per model entry (not the base) for per-model parameters, per
  // gradient point.
  auto names_of = [](const std::vector<ParamDef>& defs) {
    std::vector<std::string> n;
    for (const auto& d : defs) n.push_back(d.name);
    return n;
  };
  const auto per_model = names_of(method->tensor_parameters()), global = names_of(method->parameters());
  std::vector<Dimension> dims;
  const YAML::Node models = original["models"];
  for (const auto& range : spec.ranges) {
    const bool is_model = std::find(per_model.begin(), per_model.end(), range.name) != per_model.end();
    const bool is_global = std::find(global.begin(), global.end(), range.name) != global.end();
    if (!is_model && !is_global) {
      std::string known;
      for (const auto& n : per_model) known += (known.empty() ? "" : ", ") + n;
      for (const auto& n : global) known += (known.empty() ? "" : ", ") + n;
      fail(spec.source.string(), "search: '" + range.name + "' is not a parameter of " + config.merge_method +
                                     " (it has: " + known + ")");
    }
    for (int m = is_model ? 0 : -1; m < (is_model ? static_cast<int>(config.slices.front().sources.size()) : 0); ++m) {
      if (m >= 0) {
        const auto& src = config.slices.front().sources[static_cast<size_t>(m)];
        if (config.base_model && src.path.string() == *config.base_model) continue;  // the base has no weight
      }
      for (int64_t g = 0; g < spec.layer_groups; ++g) {
        Dimension d{range.name, m, g, range.lo, range.hi, range.name};
        if (m >= 0) d.label += "[" + config.slices.front().sources[static_cast<size_t>(m)].path.filename().string() + "]";
        if (spec.layer_groups > 1) d.label += "@" + std::to_string(g);
        dims.push_back(d);
      }
    }
  }
  SearchResult result;
  for (const auto& d : dims) result.dimensions.push_back(d.label);

  // The validation text (the first max_tokens tokens of each file) and the references' scores.
  const fs::path tokenizer_dir = config.base_model ? fs::path(*config.base_model) : config.slices.front().sources.front().path;
  const auto tok = tokenizer::Tokenizer::load(tokenizer_dir);
  const int threads = std::max(1, options.merge.threads);
  std::vector<std::vector<int32_t>> tokens;
  for (const auto& f : spec.files) {
    auto t = tok.encode_file(f.data);
    if (static_cast<int64_t>(t.size()) > spec.max_tokens) t.resize(static_cast<size_t>(spec.max_tokens));
    if (static_cast<int64_t>(t.size()) < spec.window)
      fail(f.data.string(), "has " + std::to_string(t.size()) + " tokens, fewer than one window of " +
                                std::to_string(spec.window));
    tokens.push_back(std::move(t));
    result.files.push_back(f.data.filename().string());
    double ref = 1;
    if (f.reference) ref = perplexity(*model::Transformer::load(*f.reference), tokens.back(), spec, threads);
    result.reference_perplexities.push_back(ref);
  }

  std::vector<std::vector<double>> units;  // each trial's point in the unit box
  // One trial: merge in memory, build the model from those bytes, score every file.
  auto evaluate = [&](const std::vector<double>& unit) {
    const std::string yaml = render(original, dims, unit, spec.layer_groups);
    const MergeConfig trial_config = MergeConfig::parse(yaml, config_path);
    MemoryModel memory;
    MergeOptions mo = options.merge;
    mo.progress = nullptr;
    mo.before_commit = nullptr;
    mo.to_gguf.reset();
    mo.to_memory = [&](const io::TensorSpec& s, std::span<const uint8_t> bytes) {
      std::lock_guard lock(memory.mutex);
      memory.tensors[s.name] = {s, std::vector<uint8_t>(bytes.begin(), bytes.end())};
    };
    const MergeSummary summary = run_merge(trial_config, config_path.parent_path() / ".anvil-search", mo);
    const auto cfg = model::ModelConfig::parse(summary.config_json, where + " (trial)");
    auto get = [&](const std::string& name) {
      const auto& [s, bytes] = memory.tensors.at(name);
      return at::from_blob(const_cast<uint8_t*>(bytes.data()), s.shape,
                           at::TensorOptions().dtype(model::to_scalar_type(s.dtype)))
          .to(at::kFloat, false, /*copy=*/true);
    };
    auto has = [&](const std::string& name) { return memory.tensors.count(name) > 0; };
    model::Transformer m(cfg, get, has, model::LoadOptions{});
    memory.tensors.clear();  // the model holds its own fp32 copies now
    SearchTrial t;
    for (size_t i = 0; i < dims.size(); ++i) t.values.push_back(dims[i].lo + unit[i] * (dims[i].hi - dims[i].lo));
    units.push_back(unit);
    double worst = 0, sum = 0;
    for (size_t i = 0; i < tokens.size(); ++i) {
      t.perplexities.push_back(perplexity(m, tokens[i], spec, threads));
      const double ratio = t.perplexities.back() / result.reference_perplexities[i];
      worst = std::max(worst, ratio);
      sum += ratio;
    }
    t.score = spec.objective == SearchObjective::WorstRatio ? worst : sum / static_cast<double>(tokens.size());
    if (!std::isfinite(t.score)) t.score = 1e30;  // a merge that diverges loses, it does not stop the search
    result.trials.push_back(t);
    if (t.score < result.trials[result.best].score) result.best = result.trials.size() - 1;
    if (options.progress)
      options.progress(static_cast<int64_t>(result.trials.size()), spec.budget, result.trials[result.best].score);
    return t.score;
  };

  std::vector<double> start;
  for (const auto& d : dims)
    start.push_back(start_of(d.model < 0 ? original["parameters"] : models[static_cast<size_t>(d.model)]["parameters"], d,
                             spec.layer_groups));
  evaluate(start);  // trial 0: the config as written (budget 1: only this, a config's score)
  if (spec.budget > 1) {
    CmaEs cma(start, spec.sigma, spec.seed, static_cast<int>(spec.population));
    while (static_cast<int64_t>(result.trials.size()) < spec.budget) {
      auto candidates = cma.ask();
      const int64_t left = spec.budget - static_cast<int64_t>(result.trials.size());
      if (static_cast<int64_t>(candidates.size()) > left) {
        for (int64_t i = 0; i < left; ++i) evaluate(candidates[static_cast<size_t>(i)]);  // the budget's last few
        break;
      }
      std::vector<double> scores;
      for (const auto& c : candidates) scores.push_back(evaluate(c));
      cma.tell(scores);
    }
  }
  result.best_yaml = render(original, dims, units[result.best], spec.layer_groups);
  return result;
}

}  // namespace anvil::merge
