// The merge search: CMA-ES against functions whose minimum is known, and the search on the
// fixture pair against every config shipped in configs/ on the same objective (the worse of the
// two perplexity ratios to each specialist), each scored the same way (budget 1: the config as
// written). The in-memory trial scores as the merged directory does.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include <unistd.h>

#include <cmath>

#include "eval/perplexity.h"
#include "io/atomic_file.h"
#include "merge/cma_es.h"
#include "merge/merge_search.h"
#include "model/transformer.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

using namespace anvil;
namespace fs = std::filesystem;

namespace {

// An ellipsoid with condition number 100 and its minimum at c, inside the box.
double ellipsoid(const std::vector<double>& x, const std::vector<double>& c) {
  double f = 0;
  for (size_t i = 0; i < x.size(); ++i)
    f += std::pow(10.0, 2.0 * static_cast<double>(i) / static_cast<double>(x.size() - 1)) * (x[i] - c[i]) * (x[i] - c[i]);
  return f;
}

merge::SearchSpec pair_spec() {
  merge::SearchSpec s;
  s.source = "test spec";
  s.files = {{test::shared_dir() / "data/fortune.val.txt", test::model_dir("ft-fortune")},
             {test::shared_dir() / "data/changelog.val.txt", test::model_dir("ft-changelog")}};
  s.max_tokens = 2048;
  return s;
}

}  // namespace

TEST(MergeSearch, CmaEsFindsTheMinimumOfAnIllConditionedQuadratic) {
  const std::vector<double> c{0.3, 0.7, 0.55, 0.2};
  merge::CmaEs cma({0.5, 0.5, 0.5, 0.5}, 0.3, 7);
  for (int g = 0; g < 120; ++g) {
    auto xs = cma.ask();
    std::vector<double> f;
    for (const auto& x : xs) f.push_back(ellipsoid(x, c));
    cma.tell(f);
  }
  for (size_t i = 0; i < c.size(); ++i) EXPECT_NEAR(cma.mean()[i], c[i], 1e-4) << i;
  // A minimum on the box's edge (x0 wants -0.2): the clipped search settles on the edge.
  merge::CmaEs edge({0.5, 0.5}, 0.3, 3);
  for (int g = 0; g < 100; ++g) {
    auto xs = edge.ask();
    std::vector<double> f;
    for (const auto& x : xs) f.push_back(ellipsoid(x, {-0.2, 0.4}));
    edge.tell(f);
  }
  EXPECT_NEAR(std::clamp(edge.mean()[0], 0.0, 1.0), 0.0, 1e-3);
  EXPECT_NEAR(edge.mean()[1], 0.4, 1e-3);
}

TEST(MergeSearch, CmaEsAsksTheSameForTheSameSeed) {
  merge::CmaEs a({0.5, 0.5, 0.5}, 0.2, 11), b({0.5, 0.5, 0.5}, 0.2, 11), c({0.5, 0.5, 0.5}, 0.2, 12);
  EXPECT_EQ(a.ask(), b.ask());
  EXPECT_NE(a.ask(), c.ask());
}

TEST(MergeSearch, SearchedTiesBeatsEveryShippedConfigOnTheObjective) {
  c10::InferenceMode guard;
  merge::SearchOptions opts;
  opts.merge.threads = 2;
  merge::SearchSpec spec = pair_spec();
  spec.ranges = {{"weight", 0.2, 1.5}, {"density", 0.2, 1.0}};
  spec.budget = 16;
  const fs::path configs = ANVIL_CONFIGS_DIR;
  const auto searched = merge::run_merge_search(configs / "ties.yaml", spec, opts);
  ASSERT_EQ(searched.trials.size(), 16u);
  ASSERT_EQ(searched.dimensions.size(), 4u);  // weight and density of each fine-tune (the base has none)
  const double best = searched.trials[searched.best].score;
  std::printf("  searched TIES: %.4f (trial %zu; as written %.4f)\n", best, searched.best, searched.trials[0].score);

  // The best YAML is the config of the best trial: scored as written, it gives the same score.
  test::TempDir dir;
  const fs::path best_yaml = configs / (".search-test-best-" + std::to_string(::getpid()) + ".yaml");
  io::write_text_file(best_yaml, searched.best_yaml);  // beside ties.yaml: the same relative paths
  merge::SearchSpec once = pair_spec();
  once.budget = 1;
  const auto again = merge::run_merge_search(best_yaml, once, opts);
  fs::remove(best_yaml);
  EXPECT_NEAR(again.trials[0].score, best, 1e-9 * best);

  int compared = 0;
  for (const auto& entry : fs::directory_iterator(configs)) {
    if (entry.path().extension() != ".yaml") continue;
    const auto scored = merge::run_merge_search(entry.path(), once, opts);
    std::printf("  %-24s %.4f\n", entry.path().filename().c_str(), scored.trials[0].score);
    EXPECT_LT(best, scored.trials[0].score) << entry.path().filename();
    ++compared;
  }
  EXPECT_GE(compared, 15);
}

// A trial's model is built from the merge's bytes in memory; merged to a directory and loaded
// from it (computing from the stored bf16 in place) it scores the same, within fp32 summation
// order (the two paths run different GEMM tilings): 1e-5 relative.
TEST(MergeSearch, InMemoryTrialScoresAsTheMergedDirectory) {
  c10::InferenceMode guard;
  const fs::path configs = ANVIL_CONFIGS_DIR;
  merge::SearchSpec once = pair_spec();
  once.budget = 1;
  merge::SearchOptions opts;
  opts.merge.threads = 2;
  const auto r = merge::run_merge_search(configs / "breadcrumbs_ties.yaml", once, opts);
  test::TempDir dir;
  merge::MergeOptions mo;
  mo.threads = 2;
  merge::run_merge(merge::MergeConfig::load(configs / "breadcrumbs_ties.yaml"), dir / "m", mo);
  auto m = model::Transformer::load(dir / "m");
  const auto tok = tokenizer::Tokenizer::load(dir / "m");
  for (size_t i = 0; i < once.files.size(); ++i) {
    auto tokens = tok.encode_file(once.files[i].data);
    tokens.resize(2048);
    eval::PerplexityOptions po;
    po.threads = 2;
    const double ppl = eval::evaluate_perplexity(*m, tokens, po).perplexity;
    EXPECT_NEAR(r.trials[0].perplexities[i], ppl, 1e-5 * ppl) << once.files[i].data;
  }
}

TEST(MergeSearch, SpecErrorsNameTheFileAndKey) {
  test::TempDir dir;
  auto error_of = [&](const std::string& yaml) -> std::string {
    io::write_text_file(dir / "s.yaml", yaml);
    try {
      merge::SearchSpec::load(dir / "s.yaml");
    } catch (const Error& e) {
      return e.what();
    }
    return "accepted";
  };
  const std::string data = "data:\n  - file: " + (test::shared_dir() / "data/fortune.val.txt").string() + "\n";
  EXPECT_NE(error_of("search: {weight: [1, 0]}\n" + data).find("low < high"), std::string::npos);
  EXPECT_NE(error_of("search: {weight: [0, .nan]}\n" + data).find("weight"), std::string::npos);
  EXPECT_NE(error_of("search: {weight: 0.5}\n" + data).find("range"), std::string::npos);
  EXPECT_NE(error_of("search: {weight: [0, 1]}\ndata:\n  - file: nowhere.txt\n").find("nowhere.txt"), std::string::npos);
  EXPECT_NE(error_of("search: {weight: [0, 1]}\n" + data + "budget: 0\n").find("budget"), std::string::npos);
  EXPECT_NE(error_of("search: {weight: [0, 1]}\n" + data + "objective: best\n").find("objective"), std::string::npos);
  EXPECT_NE(error_of("search: {weight: [0, 1]}\n" + data + "trials: 5\n").find("trials"), std::string::npos);
  // A parameter the method does not have is refused when the search starts, naming the spec.
  merge::SearchSpec spec = pair_spec();
  spec.source = dir / "s.yaml";
  spec.ranges = {{"gamma", 0, 1}};
  try {
    merge::run_merge_search(fs::path(ANVIL_CONFIGS_DIR) / "ties.yaml", spec, {});
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gamma"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("s.yaml"), std::string::npos) << e.what();
  }
}
