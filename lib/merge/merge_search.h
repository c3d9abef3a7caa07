#pragma once
// anvil merge CONFIG --search SPEC: what mergekit-evolve does with ray, vLLM and lm-eval, in one
// process. The spec names ranges for the config's parameters (each model's weight or density,
// global ones such as lambda or t; optionally as per-layer gradients), an objective over the
// user's validation files, a trial budget and a seed. Each trial merges in memory (nothing is
// written), scores the merged model with anvil's kernel, and CMA-ES proposes the next ones.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "merge/merge.h"

namespace anvil::merge {

struct SearchRange {
  std::string name;  // a parameter of the merge method
  double lo = 0, hi = 1;
};

struct SearchFile {
  std::filesystem::path data;
  std::optional<std::filesystem::path> reference;  // a model whose perplexity divides the merged one's
};

enum class SearchObjective {
  WorstRatio,  // the largest of the perplexity ratios (every skill kept)
  MeanRatio,   // their mean
};

struct SearchSpec {
  std::filesystem::path source;
  std::vector<SearchRange> ranges;
  int64_t layer_groups = 1;  // > 1: each parameter a gradient over the layers with this many points
  SearchObjective objective = SearchObjective::WorstRatio;
  std::vector<SearchFile> files;
  int64_t max_tokens = 8192;  // per file: the first this many tokens (trials stay cheap)
  int64_t window = 256;
  int64_t budget = 40;        // trials, the config as written included
  int64_t population = 0;     // CMA-ES lambda (0: 4 + 3 ln(dimensions))
  double sigma = 0.2;         // the first step, as a fraction of each range
  uint64_t seed = 0;

  static SearchSpec load(const std::filesystem::path& yaml_file);
};

struct SearchTrial {
  std::vector<double> values;       // the parameters' values, in SearchResult::dimensions' order
  std::vector<double> perplexities;  // one per file
  double score = 0;
};

struct SearchResult {
  std::vector<std::string> dimensions;  // "weight[ft-fortune]", "lambda", "density[ft-fortune]@2", ...
  std::vector<std::string> files;       // data file names
  std::vector<double> reference_perplexities;  // 1 where a file has no reference
  std::vector<SearchTrial> trials;      // trial 0 is the config as written
  size_t best = 0;
  std::string best_yaml;                // the config with the best trial's values
};

struct SearchOptions {
  MergeOptions merge;  // threads, seed, gradient rule (outputs are ignored: trials stay in memory)
  // After every trial: trials done, budget, best score so far.
  std::function<void(int64_t done, int64_t total, double best)> progress;
};

SearchResult run_merge_search(const std::filesystem::path& config_path, const SearchSpec& spec,
                              const SearchOptions& options);

}  // namespace anvil::merge
