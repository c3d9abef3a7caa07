// Merge methods on hand-computed cases (mergekit's semantics), identities on the real models,
// config errors, and the real pair: a merge of ft-fortune and ft-changelog that keeps both skills.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include "eval/perplexity.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "merge/block_kernel.h"
#include "merge/merge.h"
#include "merge/methods/methods.h"
#include "merge/methods/task_vectors.h"
#include "model/tensor_bridge.h"
#include "model/transformer.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "torch_support.h"
#include "util/error.h"

using namespace anvil;
using merge::MergeInput;
using merge::MergeTask;

namespace {

at::Tensor vec(std::vector<float> v) { return at::tensor(v, at::TensorOptions().dtype(at::kFloat)); }

MergeTask task_of(std::vector<MergeInput> inputs, std::map<std::string, double> params) {
  return MergeTask{"t", std::move(inputs), std::move(params), 7};
}

void expect_close(const at::Tensor& got, std::vector<float> expected, double tol = 1e-6) {
  ASSERT_EQ(got.numel(), static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(got[i].item<float>(), expected[i], tol) << "element " << i;
}

std::string m(const std::string& name) { return test::model_dir(name).string(); }

// Writes `yaml` to a temp config and merges it into a fresh output directory.
struct MergeRun {
  test::TempDir dir;
  std::filesystem::path out;
  merge::MergeSummary summary;
  MergeRun(const std::string& yaml, uint64_t seed = 0, int64_t chunk_elements = 4 << 20,
           merge::GradientRule rule = merge::GradientRule::Current) {
    io::write_text_file(dir / "config.yaml", yaml);
    out = dir / "out";
    merge::MergeOptions opts;
    opts.gradient_rule = rule;
    opts.seed = seed;
    opts.threads = 2;
    opts.chunk_elements = chunk_elements;
    summary = merge::run_merge(merge::MergeConfig::load(dir / "config.yaml"), out, opts);
  }
};

std::string expect_config_error(const std::string& yaml) {
  test::TempDir dir;
  io::write_text_file(dir / "config.yaml", yaml);
  try {
    merge::MergeOptions opts;
    merge::run_merge(merge::MergeConfig::load(dir / "config.yaml"), dir / "out", opts);
  } catch (const Error& e) {
    EXPECT_FALSE(std::filesystem::exists(dir / "out")) << "a failed merge left an output directory";
    EXPECT_EQ(test::count_entries(dir.path()), 1u) << "a failed merge left temporary files";
    return e.what();
  }
  ADD_FAILURE() << "config accepted:\n" << yaml;
  return "";
}

}  // namespace

TEST(MergeMethods, TiesSignElectionByHand) {
  c10::InferenceMode guard;
  auto* ties = merge::find_merge_method("ties");
  // Task vectors (base 0): m1 = [1,-2,3,0.5], m2 = [-3,1,1,0.5]. Their sum [-2,-1,4,1] elects
  // signs [-,-,+,+]; agreeing entries: m1 {-2,3,0.5}, m2 {-3,1,0.5}; normalized by agreeing weights.
  auto r = ties->merge(task_of({{vec({0, 0, 0, 0}), {{"weight", 1}, {"density", 1}}, true},
                                {vec({1, -2, 3, 0.5}), {{"weight", 1}, {"density", 1}}, false},
                                {vec({-3, 1, 1, 0.5}), {{"weight", 1}, {"density", 1}}, false}},
                               {{"normalize", 1}, {"rescale", 0}, {"int8_mask", 0}, {"lambda", 1}}));
  expect_close(r, {-3, -2, 2, 0.5});
  // density 0.5 keeps the top 2 magnitudes of each: m1 -> [0,-2,3,0], m2 -> [-3,1.5,0,0]. Sum
  // [-3,-0.5,3,0] elects [-,-,+,+] (0 counts as +); trimmed zeros never vote.
  auto d = ties->merge(task_of({{vec({0, 0, 0, 0}), {{"weight", 1}, {"density", 1}}, true},
                                {vec({1, -2, 3, 0.5}), {{"weight", 1}, {"density", 0.5}}, false},
                                {vec({-3, 1.5, 1, 0.5}), {{"weight", 1}, {"density", 0.5}}, false}},
                               {{"normalize", 1}, {"rescale", 0}, {"int8_mask", 0}, {"lambda", 1}}));
  expect_close(d, {-3, -2, 3, 0});
}

TEST(MergeMethods, TaskArithmeticAndLinearByHand) {
  c10::InferenceMode guard;
  auto r = merge::find_merge_method("task_arithmetic")
               ->merge(task_of({{vec({1, 1}), {{"weight", 0}, {"density", 1}}, true},
                                {vec({2, 0}), {{"weight", 0.5}, {"density", 1}}, false},
                                {vec({1, 4}), {{"weight", 2}, {"density", 1}}, false}},
                               {{"normalize", 0}, {"rescale", 0}, {"int8_mask", 0}, {"lambda", 1}}));
  expect_close(r, {1 + 0.5 * 1 + 2 * 0, 1 + 0.5 * -1 + 2 * 3});
  auto l = merge::find_merge_method("linear")->merge(
      task_of({{vec({1, 2}), {{"weight", 3}}, false}, {vec({5, 6}), {{"weight", 1}}, false}}, {{"normalize", 1}}));
  expect_close(l, {2, 3});
  auto u = merge::find_merge_method("linear")->merge(
      task_of({{vec({1, 2}), {{"weight", 3}}, false}, {vec({5, 6}), {{"weight", 1}}, false}}, {{"normalize", 0}}));
  expect_close(u, {8, 12});
}

// The newer mergekit methods on hand-computed cases (mergekit 0.1.5's formulas, see each file).
TEST(MergeMethods, NearSwapModelStockKarcherByHand) {
  c10::InferenceMode guard;
  // nearswap, t = 1: w = clamp(1 / max(|a - b|, 1e-6), 0, 1) = [1, 0.5, 1, 1].
  auto ns = merge::find_merge_method("nearswap")
                ->merge(task_of({{vec({0, 0, 0, 0}), {}, true}, {vec({0.5, 2, -0.1f, 0}), {}, false}}, {{"t", 1.0}}));
  expect_close(ns, {0.5, 1, -0.1f, 0});
  auto stock = [](std::vector<float> w1, std::vector<float> w2, double filter_wise = 0) {
    return merge::find_merge_method("model_stock")
        ->merge(task_of({{vec({0, 0}), {}, true}, {vec(w1), {}, false}, {vec(w2), {}, false}}, {{"filter_wise", filter_wise}}));
  };
  // Orthogonal task vectors: cos 0, t 0, the base. At 45 degrees: cos = 1/sqrt(2),
  // t = 2 cos / (1 + cos) = 0.828427, times the average [1, 0.5].
  expect_close(stock({1, 0}, {0, 1}), {0, 0});
  expect_close(stock({1, 0}, {1, 1}), {0.828427f, 0.414214f});
  expect_close(stock({1, 0}, {1, 1}, 1), {0.828427f, 0.414214f});  // one row: the same
  // Identities: identical fine-tunes (cos 1, t 1) give the fine-tune; fine-tunes equal to the base give the base.
  expect_close(stock({3, -2}, {3, -2}), {3, -2});
  auto karcher = [](std::vector<std::vector<float>> in) {
    std::vector<MergeInput> inputs;
    for (auto& v : in) inputs.push_back({vec(v), {}, false});
    return merge::find_merge_method("karcher")->merge(task_of(inputs, {{"max_iter", 10}, {"tol", 1e-5}}));
  };
  // [2, 0] and [0, 4]: the directions' spherical mean is 45 degrees, the scale the mean norm 3.
  expect_close(karcher({{2, 0}, {0, 4}}), {3 / std::sqrt(2.0f), 3 / std::sqrt(2.0f)}, 1e-5);
  expect_close(karcher({{1, 2}, {1, 2}, {1, 2}}), {1, 2}, 1e-6);
  // Three directions 0, 60 and 90 degrees on the circle: the Karcher mean is their angle mean, 50.
  const float r = 50 * 3.14159265f / 180;
  expect_close(karcher({{1, 0}, {0.5f, std::sqrt(3.0f) / 2}, {0, 1}}), {std::cos(r), std::sin(r)}, 1e-4);
}

// multislerp and nuslerp by hand. multislerp projects onto the tangent space at the weighted mean
// of the directions, so for two inputs at weights 3:1 it lands on that mean (18.43 degrees for
// e1, e2), not on SLERP's 22.5: mergekit's formula, pinned here.
TEST(MergeMethods, MultiSlerpAndNuSlerpByHand) {
  c10::InferenceMode guard;
  auto multi = [](std::vector<MergeInput> in) {
    return merge::find_merge_method("multislerp")->merge(task_of(std::move(in), {{"normalize_weights", 1}, {"eps", 1e-8}}));
  };
  expect_close(multi({{vec({1, 0}), {{"weight", 1}}, false}, {vec({0, 1}), {{"weight", 1}}, false}}), {0.707107f, 0.707107f});
  expect_close(multi({{vec({1, 0}), {{"weight", 3}}, false}, {vec({0, 1}), {{"weight", 1}}, false}}), {0.948683f, 0.316228f});
  // Norms 2 and 4 at equal weights: the mean norm 3; with a base the task vectors interpolate.
  expect_close(multi({{vec({2, 0}), {{"weight", 1}}, false}, {vec({0, 4}), {{"weight", 1}}, false}}), {2.12132f, 2.12132f}, 1e-5);
  expect_close(multi({{vec({1, 1}), {}, true}, {vec({2, 1}), {{"weight", 1}}, false}, {vec({1, 2}), {{"weight", 1}}, false}}),
               {1.707107f, 1.707107f});
  // Opposed inputs: linear.
  expect_close(multi({{vec({1, 0}), {{"weight", 1}}, false}, {vec({-1, 0}), {{"weight", 1}}, false}}), {0, 0});
  auto nu = [](std::vector<MergeInput> in, double row_wise = 0, double flatten = 1) {
    return merge::find_merge_method("nuslerp")
        ->merge(task_of(std::move(in), {{"nuslerp_row_wise", row_wise}, {"nuslerp_flatten", flatten}}));
  };
  // t = w2 / (w1 + w2): 0.5, then 0.75 (67.5 degrees from e1).
  expect_close(nu({{vec({1, 0}), {{"weight", 1}}, false}, {vec({0, 1}), {{"weight", 1}}, false}}), {0.707107f, 0.707107f});
  expect_close(nu({{vec({1, 0}), {{"weight", 1}}, false}, {vec({0, 1}), {{"weight", 3}}, false}}), {0.382683f, 0.923880f});
  expect_close(nu({{vec({1, 1}), {}, true}, {vec({2, 1}), {{"weight", 1}}, false}, {vec({1, 2}), {{"weight", 1}}, false}}),
               {1.707107f, 1.707107f});
  // Row by row: [[1, 0], [2, 0]] and [[0, 1], [2, 0]] -> the first row turns 45 degrees, the second
  // (parallel) stays; flattened, the whole tensor turns by one angle.
  const auto a = at::tensor({1.f, 0.f, 2.f, 0.f}).view({2, 2}), b = at::tensor({0.f, 1.f, 2.f, 0.f}).view({2, 2});
  expect_close(nu({{a, {{"weight", 1}}, false}, {b, {{"weight", 1}}, false}}, 0, 0).reshape({-1}), {0.707107f, 0.707107f, 2, 0});
  const double cos_ab = 4.0 / 5.0, th = std::acos(cos_ab), k = std::sin(th / 2) / std::sin(th);
  expect_close(nu({{a, {{"weight", 1}}, false}, {b, {{"weight", 1}}, false}}).reshape({-1}),
               {static_cast<float>(k), static_cast<float>(k), static_cast<float>(4 * k), 0});
}

TEST(MergeMethods, SlerpEndpointsKnownAngleAndParallelFallback) {
  auto v0 = vec({2, 0}), v1 = vec({0, 1});
  expect_close(merge::slerp(0, v0, v1), {2, 0});
  expect_close(merge::slerp(1, v0, v1), {0, 1});
  // 90 degrees: at t = 0.5 both coefficients are sin(45)/sin(90) = 0.70711, applied to the
  // original (unnormalized) vectors as mergekit does.
  expect_close(merge::slerp(0.5, v0, v1), {2 * 0.70710678f, 0.70710678f});
  // 60 degrees, t = 0.25: s0 = sin(45)/sin(60), s1 = sin(15)/sin(60).
  auto a = vec({1, 0}), b = vec({0.5f, 0.86602540f});
  expect_close(merge::slerp(0.25, a, b), {0.81649658f + 0.29885849f * 0.5f, 0.29885849f * 0.86602540f});
  // cos = 0.99995 > 0.9995: plain linear interpolation.
  expect_close(merge::slerp(0.5, vec({1, 0}), vec({1, 0.01f})), {1, 0.005f});
}

TEST(MergeMethods, DareIsReproducibleForASeedAndRescales) {
  c10::InferenceMode guard;
  auto base = at::zeros({10000});
  auto ft = at::ones({10000});
  auto run = [&](uint64_t seed) {
    MergeTask t{"x", {{base, {{"weight", 1}, {"density", 1}}, true}, {ft, {{"weight", 1}, {"density", 0.3}}, false}},
                {{"normalize", 0}, {"rescale", 1}, {"int8_mask", 0}, {"lambda", 1}}, seed};
    return merge::find_merge_method("dare_linear")->merge(t);
  };
  auto a = run(1), b = run(1), c = run(2);
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_FALSE(at::equal(a, c));
  const double kept = (a != 0).sum().item<double>();
  EXPECT_NEAR(kept / 10000.0, 0.3, 0.03);  // binomial sd is 0.0046
  // Current mergekit's rescale: the survivors scaled so the task vector keeps its L1 norm
  // (10000), i.e. each survivor is 10000 / kept (the old rule, 1 / density, only on average).
  EXPECT_NEAR(a.max().item<float>(), 10000.0 / kept, 1e-3);
  EXPECT_NEAR(a.abs().sum().item<double>(), 10000.0, 1e-2);
  // Without rescale the survivors keep their value.
  MergeTask plain{"x", {{base, {{"weight", 1}, {"density", 1}}, true}, {ft, {{"weight", 1}, {"density", 0.3}}, false}},
                  {{"normalize", 0}, {"rescale", 0}, {"int8_mask", 0}, {"lambda", 1}}, 1};
  EXPECT_TRUE(at::equal(merge::find_merge_method("dare_linear")->merge(plain), (a != 0).to(at::kFloat)));
}

// Breadcrumbs drops the gamma outliers and then the smallest entries, in mergekit's integer
// arithmetic; breadcrumbs_ties then elects signs.
TEST(MergeMethods, BreadcrumbsByHand) {
  c10::InferenceMode guard;
  auto run = [](std::string method, std::vector<MergeInput> models, std::map<std::string, double> params = {}) {
    std::map<std::string, double> p{{"normalize", 0}, {"rescale", 0}, {"int8_mask", 0}, {"lambda", 1}};
    for (auto& [k, v] : params) p[k] = v;
    std::vector<MergeInput> inputs{{at::zeros({static_cast<int64_t>(models[0].tensor.numel())}), {{"weight", 0}, {"density", 1}, {"gamma", 0}}, true}};
    for (auto& in : models) inputs.push_back(in);
    return merge::find_merge_method(method)->merge(task_of(inputs, p));
  };
  // |delta| = 1..10: n = 10, density 0.5 -> 5 kept; gamma 0.1 -> the largest (10) dropped, then
  // the 4 smallest (1..4): 5..9 stay.
  auto d = vec({-3, 10, 5, -6, 1, 9, -2, 7, 4, -8});
  expect_close(run("breadcrumbs", {{d, {{"weight", 1}, {"density", 0.5}, {"gamma", 0.1}}, false}}),
               {0, 0, 5, -6, 0, 9, 0, 7, 0, -8});
  // density 0.95 + gamma 0.1 over 100 entries: 95 kept, so only 5 of the 10 outliers can go.
  auto ramp = at::arange(1, 101, at::TensorOptions().dtype(at::kFloat));
  auto r = run("breadcrumbs", {{ramp, {{"weight", 1}, {"density", 0.95}, {"gamma", 0.1}}, false}});
  EXPECT_EQ((r != 0).sum().item<int64_t>(), 95);
  EXPECT_EQ(r.max().item<float>(), 95.0f);
  // density 1: untouched, outliers included; weight and lambda scale the delta.
  expect_close(run("breadcrumbs", {{d, {{"weight", 0.5}, {"density", 1}, {"gamma", 0.1}}, false}}, {{"lambda", 2}}),
               {-3, 10, 5, -6, 1, 9, -2, 7, 4, -8});
  // Two models with the same magnitudes, some signs flipped, so both keep entries 2, 3, 5, 7, 9;
  // the sign election over the trimmed deltas decides where they disagree, agreeing entries add.
  auto e = vec({3, -10, -5, -6, -1, 9, 2, 7, -4, 8});
  expect_close(run("breadcrumbs_ties", {{d, {{"weight", 1}, {"density", 0.5}, {"gamma", 0.1}}, false},
                                        {e, {{"weight", 1}, {"density", 0.5}, {"gamma", 0.1}}, false}}),
               // kept: m1 {5,-6,9,7,-8}, m2 {-5,-6,9,7,8}; sums [0,0,0,-12,0,18,0,14,0,0]: signs
               // +,+,+,-,+,+,+,+,+,+ -> index 2: m1's 5 (m2's -5 disagrees), 9: m2's 8.
               {0, 0, 5, -12, 0, 18, 0, 14, 0, 8});
}

// DELLA's MagPrune: keep probabilities linear in the magnitude rank within each row, and the
// survivors rescaled to the task vector's L1 norm; a seed repeats the drop exactly.
TEST(MergeMethods, DellaKeepsLargerEntriesMoreOftenAndRescales) {
  c10::InferenceMode guard;
  // 20000 rows holding |delta| = 1..5 in shuffled order: ranks 0..4 kept with probability
  // 0.5 - 0.2 + 0.4 r / 4 = 0.3, 0.4, 0.5, 0.6, 0.7.
  const int64_t rows = 20000;
  auto magnitudes = at::arange(1, 6, at::TensorOptions().dtype(at::kFloat)).repeat({rows, 1});
  auto perm = at::argsort(at::rand({rows, 5}), /*dim=*/1, /*descending=*/false);
  auto delta = magnitudes.gather(1, perm);
  auto kept = merge::sparsify_della(delta, 0.5, 0.2, 11);
  for (int r = 0; r < 5; ++r) {
    const double p = 0.3 + 0.1 * r;
    const double frac = ((kept == static_cast<float>(r + 1)).sum().item<double>()) / static_cast<double>(rows);
    EXPECT_NEAR(frac, p, 4 * std::sqrt(p * (1 - p) / rows)) << "rank " << r;  // 4 binomial sd
  }
  EXPECT_TRUE(at::equal(kept, merge::sparsify_della(delta, 0.5, 0.2, 11)));
  EXPECT_FALSE(at::equal(kept, merge::sparsify_della(delta, 0.5, 0.2, 12)));
  // A vector is one row; density 1 and 0 are the identity and zero.
  EXPECT_TRUE(at::equal(merge::sparsify_della(delta, 1.0, 0.2, 1), delta));
  EXPECT_EQ(merge::sparsify_della(delta, 0.0, 0.2, 1).abs().sum().item<float>(), 0.0f);
  // della_linear with rescale: the L1 norm of each task vector survives the drop.
  MergeTask t{"x", {{at::zeros({rows, 5}), {{"weight", 0}, {"density", 1}, {"epsilon", 0}}, true},
                    {delta, {{"weight", 1}, {"density", 0.5}, {"epsilon", 0.2}}, false}},
              {{"normalize", 0}, {"rescale", 1}, {"int8_mask", 0}, {"lambda", 1}}, 5};
  auto out = merge::find_merge_method("della_linear")->merge(t);
  EXPECT_NEAR(out.abs().sum().item<double>() / delta.abs().sum().item<double>(), 1.0, 1e-5);
  EXPECT_TRUE(at::equal(out, merge::find_merge_method("della_linear")->merge(t)));
  // mergekit's bounds: density +/- epsilon inside (0, 1).
  t.inputs[1].params["epsilon"] = 0.5;
  EXPECT_THROW(merge::find_merge_method("della")->check(t), Error);
}

// SCE by hand: mean-square weights, variance selection, sign erasure.
TEST(MergeMethods, SceByHand) {
  c10::InferenceMode guard;
  auto sce = [](std::vector<float> a, std::vector<float> b, double topk) {
    return merge::find_merge_method("sce")->merge(task_of(
        {{vec({0, 0, 0, 0}), {}, true}, {vec(a), {}, false}, {vec(b), {}, false}}, {{"select_topk", topk}, {"int8_mask", 0}}));
  };
  // Weights: mean squares 1.5 and 3.5 -> 0.3, 0.7. Signs of the sums [2, 0, 2, 0]: all +.
  // Element 0: both agree, (0.3 + 0.7) / 1 = 1; 1: only a (2); 2: only b (3); 3: nothing, 0.
  expect_close(sce({1, 2, -1, 0}, {1, -2, 3, 0}, 1.0), {1, 2, 3, 0});
  // select_topk 0.5: variances [0, 4, 6.25, 0], 2 nonzero -> keep the largest 1 (element 2).
  // Selected a = [0,0,-1,0], b = [0,0,4,0]; the sum 3 elects +, so b's 4 alone stays.
  expect_close(sce({1, 2, -1, 0}, {1, -2, 4, 0}, 0.5), {0, 0, 4, 0});
  // Identical fine-tunes: no conflicts, the fine-tune itself.
  expect_close(sce({1, -2, 3, 0.5f}, {1, -2, 3, 0.5f}, 1.0), {1, -2, 3, 0.5f});
  // select_topk 0: nothing selected, the base.
  expect_close(sce({1, 2, -1, 0}, {1, -2, 4, 0}, 0.0), {0, 0, 0, 0});
}

TEST(MergeMethods, TaskArithmeticLambdaScalesTheMixedDelta) {
  c10::InferenceMode guard;
  MergeTask t = task_of({{vec({1, 1}), {{"weight", 0}, {"density", 1}}, true},
                         {vec({3, 0}), {{"weight", 1}, {"density", 1}}, false},
                         {vec({1, 5}), {{"weight", 1}, {"density", 1}}, false}},
                        {{"normalize", 1}, {"rescale", 0}, {"int8_mask", 0}, {"lambda", 0.5}});
  // mixed = ([2, -1] + [0, 4]) / 2 = [1, 1.5]; times 0.5, onto the base.
  expect_close(merge::find_merge_method("task_arithmetic")->merge(t), {1.5, 1.75});
  auto form = merge::find_merge_method("task_arithmetic")->linear_form(t);
  ASSERT_TRUE(form);
  EXPECT_NEAR(form->coeffs[1], 0.25, 1e-12);
}

// The streamed top-k (histogram passes over chunks) keeps exactly the entries whole-tensor top-k
// keeps, whatever the chunking; with repeated magnitudes it keeps exactly k, earliest first.
TEST(MergeMethods, StreamedMagnitudeSelectionEqualsTopK) {
  c10::InferenceMode guard;
  auto delta = at::randn({1000, 37});
  for (double density : {0.05, 0.5, 0.93}) {
    auto expected = merge::sparsify_magnitude(delta, density);
    std::vector<double> slots(merge::MagnitudeSelector::kSlots, 0.0);
    merge::MagnitudeSelector sel(slots.data());
    auto flat = delta.reshape({-1}).contiguous();
    const int64_t n = flat.numel(), cuts[] = {0, 1234, 20001, n};
    const auto k = static_cast<int64_t>(density * static_cast<double>(n));
    for (int pass = 0; pass < 2; ++pass)
      for (int c = 0; c < 3; ++c) sel.count(flat.data_ptr<float>() + cuts[c], cuts[c + 1] - cuts[c], pass, k);
    auto got = flat.clone();
    for (int c = 0; c < 3; ++c) sel.keep(got.data_ptr<float>() + cuts[c], cuts[c + 1] - cuts[c], k);
    // A second sweep over the chunks keeps the same entries.
    auto again = flat.clone();
    for (int c = 0; c < 3; ++c) sel.keep(again.data_ptr<float>() + cuts[c], cuts[c + 1] - cuts[c], k, 1);
    EXPECT_TRUE(at::equal(again, got)) << "density " << density;
    EXPECT_TRUE(at::equal(got.view(delta.sizes()), expected)) << "density " << density;
  }
  // Ties: 10 equal magnitudes, keep 4 -> the first 4 of them.
  auto tied = at::full({10}, 0.5f);
  std::vector<double> slots(merge::MagnitudeSelector::kSlots, 0.0);
  merge::MagnitudeSelector sel(slots.data());
  for (int pass = 0; pass < 2; ++pass) sel.count(tied.data_ptr<float>(), 10, pass, 4);
  sel.keep(tied.data_ptr<float>(), 10, 4);
  expect_close(tied, {0.5, 0.5, 0.5, 0.5, 0, 0, 0, 0, 0, 0});
}

// The fused one-pass path (used by the runner) against the same method's tensor operations.
// The model-axis reductions the task-vector methods use instead of LibTorch's: the same sums
// (fp32, model order: bit for bit) and the population variance within one fp32 rounding of
// at::var's (both accumulate in double; LibTorch versions differ in the order of its update).
TEST(MergeMethods, ModelAxisReductionsEqualLibTorchs) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  for (int64_t n : {1, 2, 3, 5}) {
    auto x = at::randn({n, 37, 19}, gen) * at::rand({n, 1, 1}, gen) * 10;
    EXPECT_TRUE(at::equal(merge::sum_over_models(x), n <= 2 ? x.sum(0) : [&] {
      auto s = x[0].clone();
      for (int64_t k = 1; k < n; ++k) s = s + x[k];
      return s;
    }())) << n;
    if (n <= 2) {
      EXPECT_TRUE(at::equal(merge::sum_over_models(x), x.sum(0))) << n;
    }
    auto want = at::var(x, {0}, /*unbiased=*/false, false);
    auto got = merge::variance_over_models(x);
    EXPECT_TRUE(((got - want).abs() <= want.abs() * 1.2e-7 + 1e-30).all().item<bool>()) << n;
  }
}

// DELLA's ranks come from a radix sort on |delta|'s bits; LibTorch's stable sort (ties in index
// order, as DELLA's rule says) must give the same ranks, so the same kept entries for a seed.
TEST(MergeMethods, DellaRadixRanksEqualAStableSort) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(9);
  auto delta = (at::randn({37, 53}, gen) * 8).round() / 8;  // many equal magnitudes, zeros and signs
  const double density = 0.6, epsilon = 0.2;
  const uint64_t seed = 77;
  auto order = std::get<1>(at::sort(delta.abs(), /*stable=*/true, 1, false));
  auto ranks = at::empty_like(order).scatter_(1, order, at::arange(53, order.options()).expand_as(order).contiguous());
  auto probs = (ranks.to(at::kFloat) / 52.0f * 2 * epsilon + (density - epsilon)).clamp(0, 1);
  auto want = merge::keep_with_probabilities(delta, probs, seed);
  EXPECT_TRUE(at::equal(merge::sparsify_della(delta, density, epsilon, seed), want));
}

// The random drops of two models (seeds one increment apart, as the task-vector family derives
// them) are independent: neither the same mask nor one shifted by an element; each keeps about
// the density (4 binomial sd over 20,000 entries).
TEST(MergeMethods, RandomDropsOfTwoModelsAreIndependent) {
  auto ones = at::ones({20000});
  const uint64_t seed = 12345, next = seed + 0x9E3779B97F4A7C15ull;
  auto a = merge::sparsify_random(ones, 0.5, seed), b = merge::sparsify_random(ones, 0.5, next);
  const double sd = std::sqrt(20000 * 0.25);
  EXPECT_NEAR(a.sum().item<double>(), 10000, 4 * sd);
  EXPECT_NEAR(b.sum().item<double>(), 10000, 4 * sd);
  for (int shift : {0, 1, -1}) {
    auto x = a.narrow(0, std::max(0, shift), 19999), y = b.narrow(0, std::max(0, -shift), 19999);
    EXPECT_NEAR((x == y).to(at::kFloat).mean().item<double>(), 0.5, 4 * std::sqrt(0.25 / 19999)) << shift;
  }
}

TEST(MergeMethods, FusedCombinationEqualsTensorOperations) {
  c10::InferenceMode guard;
  io::Checkpoint base(test::model_dir("base")), a(test::model_dir("ft-fortune")), b(test::model_dir("ft-changelog"));
  const std::string name = "model.layers.2.mlp.down_proj.weight";
  std::vector<const io::TensorView*> views{&base.get(name), &a.get(name), &b.get(name)};
  for (std::string method : {"linear", "task_arithmetic"}) {
    MergeTask t{name, {}, {{"normalize", method == "linear" ? 1.0 : 0.0}, {"rescale", 0}, {"int8_mask", 0}, {"lambda", 1}}, 0};
    for (size_t i = 0; i < views.size(); ++i)
      t.inputs.push_back({model::load_tensor(*views[i], at::kFloat), {{"weight", 0.2 + 0.3 * i}, {"density", 1}}, i == 0});
    const auto* m = merge::find_merge_method(method);
    auto form = m->linear_form(t);
    ASSERT_TRUE(form) << method;
    std::vector<merge::CombineInput> ins;
    for (const auto* v : views) ins.push_back({v->bytes.data(), v->spec.dtype});
    auto fused = at::empty(views[0]->spec.shape, at::TensorOptions().dtype(at::kFloat));
    merge::run_merge(*merge::linear_kernel(*form), ins, fused.numel(), io::DType::F32,
                     static_cast<uint8_t*>(fused.data_ptr()));
    auto expected = m->merge(t);
    // Same arithmetic in a different order (coefficients pre-divided): a few fp32 ulps.
    EXPECT_LT(test::max_abs_diff(fused, expected), 1e-6 * expected.abs().max().item<double>() + 1e-9) << method;
  }
}

// TIES on blocks (trimming with the streamed selector, sign election element by element) against
// its tensor operations with the same selector: the same float operations, so the same floats.
// (Whole-tensor top-k may break ties among equal magnitudes, common in bf16 deltas, differently.)
TEST(MergeMethods, TiesBlockKernelEqualsTensorOperations) {
  c10::InferenceMode guard;
  io::Checkpoint base(test::model_dir("base")), a(test::model_dir("ft-fortune")), b(test::model_dir("ft-changelog"));
  for (std::string name : {"model.layers.2.mlp.down_proj.weight", "model.embed_tokens.weight"}) {
    std::vector<const io::TensorView*> views{&a.get(name), &base.get(name), &b.get(name)};  // base in the middle
    MergeTask t{name, {}, {{"normalize", 1.0}, {"rescale", 0}, {"int8_mask", 0}, {"lambda", 1}}, 0};
    for (size_t i = 0; i < views.size(); ++i)
      t.inputs.push_back({model::load_tensor(*views[i], at::kFloat), {{"weight", 0.4 + 0.3 * i}, {"density", 0.3 + 0.2 * i}}, i == 1});
    const auto* m = merge::find_merge_method("ties");
    MergeTask probe{name, {}, t.params, 0};
    for (const auto& in : t.inputs) probe.inputs.push_back({{}, in.params, in.is_base});
    auto kernel = m->block_kernel(probe);
    ASSERT_TRUE(kernel);
    std::vector<merge::CombineInput> ins;
    for (const auto* v : views) ins.push_back({v->bytes.data(), v->spec.dtype});
    const int64_t n = t.inputs[0].tensor.numel();
    std::vector<double> stats(m->statistics_size(ins.size()), 0.0);
    for (int pass = 0; pass < m->statistics_passes(t); ++pass) merge::run_statistics(*kernel, ins, n, pass, stats);
    auto fused = at::empty(views[0]->spec.shape, at::TensorOptions().dtype(at::kFloat));
    merge::run_merge(*kernel, ins, n, io::DType::F32, static_cast<uint8_t*>(fused.data_ptr()), &stats);
    std::vector<double> tensor_stats(stats.size(), 0.0);
    for (int pass = 0; pass < m->statistics_passes(t); ++pass) m->accumulate(t, pass, tensor_stats);
    t.stats = &tensor_stats;
    auto expected = m->merge(t);
    EXPECT_EQ(test::max_abs_diff(fused, expected), 0.0) << name;
    EXPECT_GT(test::max_abs_diff(fused, t.inputs[1].tensor), 0.0) << name;  // it did merge something
  }
}

TEST(MergeConfig, GradientOverEightLayersAndFilters) {
  merge::Setting g;
  g.kind = merge::Setting::Kind::Gradient;
  g.gradient = {0.0, 1.0, 0.0};
  // t = i / 7; value = piecewise-linear interpolation of [0, 1, 0] at t.
  const double expected[8] = {0, 2.0 / 7, 4.0 / 7, 6.0 / 7, 6.0 / 7, 4.0 / 7, 2.0 / 7, 0};
  for (int i = 0; i < 8; ++i)
    EXPECT_NEAR(std::get<double>(*merge::evaluate_setting("x", g, i / 7.0)), expected[i], 1e-12) << "layer " << i;

  io::write_text_file(std::filesystem::temp_directory_path() / "anvil-filter-test.yaml",
                      "merge_method: slerp\nbase_model: " + m("ft-fortune") + "\nmodels:\n  - model: " +
                          m("ft-fortune") + "\n  - model: " + m("ft-changelog") +
                          "\nparameters:\n  t:\n    - filter: self_attn\n      value: 0.2\n    - filter: mlp\n"
                          "      value: [0.0, 1.0]\n    - value: 0.5\n");
  auto cfg = merge::MergeConfig::load(std::filesystem::temp_directory_path() / "anvil-filter-test.yaml");
  auto t_of = [&](const std::string& name, double t) {
    return std::get<double>(*merge::ParameterReader(cfg, &cfg.slices[0], name, t).get("t"));
  };
  EXPECT_DOUBLE_EQ(t_of("model.layers.3.self_attn.q_proj.weight", 0.3), 0.2);
  EXPECT_DOUBLE_EQ(t_of("model.layers.3.mlp.up_proj.weight", 0.25), 0.25);
  EXPECT_DOUBLE_EQ(t_of("model.norm.weight", 1.0), 0.5);
}

TEST(Merge, SlerpGradientAppliesPerLayer) {
  c10::InferenceMode guard;
  MergeRun run("merge_method: slerp\nbase_model: " + m("ft-fortune") + "\nslices:\n  - sources:\n      - model: " +
               m("ft-fortune") + "\n        layer_range: [0, 8]\n      - model: " + m("ft-changelog") +
               "\n        layer_range: [0, 8]\nparameters:\n  t: [0.0, 1.0]\ndtype: float32\n");
  io::Checkpoint out(run.out), a(test::model_dir("ft-fortune")), b(test::model_dir("ft-changelog"));
  for (int layer : {0, 3, 7}) {
    std::string name = "model.layers." + std::to_string(layer) + ".mlp.down_proj.weight";
    auto expected = merge::slerp(layer / 7.0, model::load_tensor(a.get(name), at::kFloat),
                                 model::load_tensor(b.get(name), at::kFloat));
    EXPECT_LT(test::max_abs_diff(model::view_tensor(out.get(name)), expected), 1e-6) << name;
  }
  // Outside the layers the gradient is read at t = 0, as current mergekit does (both rules:
  // GradientsOutsideTheLayersFollowCurrentMergekitOrTheLegacyRule below).
  EXPECT_TRUE(at::equal(model::view_tensor(out.get("model.embed_tokens.weight")),
                        model::load_tensor(a.get("model.embed_tokens.weight"), at::kFloat)));
  EXPECT_TRUE(at::equal(model::view_tensor(out.get("lm_head.weight")),
                        model::load_tensor(a.get("lm_head.weight"), at::kFloat)));
}

TEST(Merge, LinearWithWeightsOneAndZeroIsTheFirstModelBitForBit) {
  MergeRun run("merge_method: linear\nmodels:\n  - model: " + m("ft-fortune") +
               "\n    parameters: {weight: 1.0}\n  - model: " + m("ft-changelog") +
               "\n    parameters: {weight: 0.0}\ndtype: float32\n");
  io::Checkpoint out(run.out), a(test::model_dir("ft-fortune"));
  ASSERT_EQ(out.names().size(), a.names().size());
  for (const auto& name : a.names())
    ASSERT_TRUE(at::equal(model::view_tensor(out.get(name)), model::load_tensor(a.get(name), at::kFloat))) << name;
}

// A gradient `t: [0, 1]` over 8 layers puts layer i at t = i / 7. Outside the layers, current
// mergekit (plan_module since 2025-03) reads it at t = 0: embeddings, final norm and LM head are
// ft-fortune's, bit for bit (SLERP at t = 0 is its first input). The legacy rule reads the final
// norm and LM head at t = 1: ft-changelog's.
TEST(Merge, GradientsOutsideTheLayersFollowCurrentMergekitOrTheLegacyRule) {
  const std::string yaml = "merge_method: slerp\nbase_model: " + m("ft-fortune") + "\nslices:\n  - sources:\n      - model: " +
                           m("ft-fortune") + "\n        layer_range: [0, 8]\n      - model: " + m("ft-changelog") +
                           "\n        layer_range: [0, 8]\nparameters:\n  t: [0, 1]\ndtype: float32\n";
  io::Checkpoint fortune(test::model_dir("ft-fortune")), changelog(test::model_dir("ft-changelog"));
  auto same = [](const io::Checkpoint& out, const io::Checkpoint& in, const std::string& name) {
    return at::equal(model::view_tensor(out.get(name)), model::load_tensor(in.get(name), at::kFloat));
  };
  ASSERT_TRUE(fortune.contains("lm_head.weight"));
  for (auto rule : {merge::GradientRule::Current, merge::GradientRule::Legacy}) {
    SCOPED_TRACE(rule == merge::GradientRule::Current ? "current" : "legacy");
    MergeRun run(yaml, 0, 4 << 20, rule);
    io::Checkpoint out(run.out);
    EXPECT_TRUE(same(out, fortune, "model.embed_tokens.weight"));
    const io::Checkpoint& tail = rule == merge::GradientRule::Current ? fortune : changelog;
    EXPECT_TRUE(same(out, tail, "model.norm.weight"));
    EXPECT_TRUE(same(out, tail, "lm_head.weight"));
    EXPECT_FALSE(same(out, rule == merge::GradientRule::Current ? changelog : fortune, "lm_head.weight"));
    // Inside the layers both rules agree: the first layer at t = 0, the last at t = 1.
    EXPECT_TRUE(same(out, fortune, "model.layers.0.mlp.down_proj.weight"));
    EXPECT_TRUE(same(out, changelog, "model.layers.7.mlp.down_proj.weight"));
  }
}

TEST(Merge, TaskArithmeticWithWeightZeroIsTheBase) {
  MergeRun run("merge_method: task_arithmetic\nbase_model: " + m("base") + "\nmodels:\n  - model: " + m("ft-fortune") +
               "\n    parameters: {weight: 0.0}\n");
  io::Checkpoint out(run.out), base(test::model_dir("base"));
  for (const auto& name : base.names()) {
    const auto& o = out.get(name);
    const auto& b = base.get(name);
    ASSERT_EQ(o.spec.dtype, io::DType::BF16);
    ASSERT_EQ(0, std::memcmp(o.bytes.data(), b.bytes.data(), b.bytes.size())) << name;
  }
  EXPECT_TRUE(std::filesystem::exists(run.out / "tokenizer.json"));
  EXPECT_TRUE(std::filesystem::exists(run.out / "generation_config.json"));
}

TEST(Merge, DareMergeRepeatsForASeed) {
  const std::string yaml = "merge_method: dare_ties\nbase_model: " + m("base") + "\nmodels:\n  - model: " +
                           m("ft-fortune") + "\n    parameters: {weight: 1.0, density: 0.5}\n  - model: " +
                           m("ft-changelog") + "\n    parameters: {weight: 1.0, density: 0.5}\n";
  MergeRun a(yaml, 42), b(yaml, 42), c(yaml, 43);
  auto bytes = [](const MergeRun& r) { return test::read_bytes(r.out / "model.safetensors"); };
  EXPECT_EQ(bytes(a), bytes(b));
  EXPECT_NE(bytes(a), bytes(c));
}

// Streaming in small row chunks (here ~20k elements, so embeddings take ~50 chunks) must give
// what whole-tensor merging gives: bit for bit for linear and TIES (its top-k selection carries
// across chunks), and for SLERP up to the order in which the chunked dot products are summed.
TEST(Merge, ChunkedStreamingEqualsWholeTensors) {
  const std::string two = "  - model: " + m("ft-fortune") + "\n    parameters: {weight: 0.3}\n  - model: " +
                          m("ft-changelog") + "\n    parameters: {weight: 0.7}\ndtype: float32\n";
  const std::string ties_two = "  - model: " + m("ft-fortune") + "\n    parameters: {weight: 0.3, density: 0.4}\n  - model: " +
                               m("ft-changelog") + "\n    parameters: {weight: 0.7, density: 0.6}\ndtype: float32\n";
  const std::string crumbs_two = "  - model: " + m("ft-fortune") + "\n    parameters: {weight: 0.3, density: 0.8, gamma: 0.02}\n  - model: " +
                                 m("ft-changelog") + "\n    parameters: {weight: 0.7, density: 0.6, gamma: 0.01}\ndtype: float32\n";
  const std::string plain_two = "  - model: " + m("ft-fortune") + "\n  - model: " + m("ft-changelog") + "\ndtype: float32\n";
  // Tolerances: 0 where the chunks see the same float operations; 1e-6 where a per-tensor sum
  // (SLERP's dot products, the L1 norms of a rescale, SCE's mean squares) is added up chunk by
  // chunk in double and may round to a float 1 ulp apart.
  struct Case {
    std::string method, base, params, models;
    double tolerance;
  };
  const Case cases[] = {{"linear", "ft-fortune", "{t: 0.3}", two, 0.0},
                        {"slerp", "ft-fortune", "{t: 0.3}", two, 1e-6},
                        {"ties", "base", "{t: 0.3}", ties_two, 0.0},
                        {"ties", "base", "{rescale: true}", ties_two, 1e-6},
                        {"nearswap", "ft-fortune", "{t: 0.002}", two, 0.0},
                        {"breadcrumbs", "base", "{}", crumbs_two, 0.0},
                        {"breadcrumbs_ties", "base", "{lambda: 0.8}", crumbs_two, 0.0},
                        {"sce", "base", "{select_topk: 0.6}", plain_two, 1e-6}};
  for (const Case& c : cases) {
    std::string yaml = "merge_method: " + c.method + "\nbase_model: " + m(c.base) + "\nparameters: " + c.params +
                       "\nmodels:\n" + c.models;
    MergeRun whole(yaml), chunked(yaml, 0, 20000);
    io::Checkpoint a(whole.out), b(chunked.out), base_ckpt(test::model_dir(c.base));
    double changed = 0;
    for (const auto& name : a.names()) {
      auto x = model::view_tensor(a.get(name));
      double diff = test::max_abs_diff(x, model::view_tensor(b.get(name)));
      ASSERT_LE(diff, c.tolerance * std::max(1.0, x.abs().max().item<double>())) << c.method << " " << name;
      changed = std::max(changed, test::max_abs_diff(x, model::load_tensor(base_ckpt.get(name), at::kFloat)));
    }
    EXPECT_GT(changed, 0.0) << c.method << " merged nothing";
  }
}

TEST(Merge, PassthroughStacksAndRenumbersLayers) {
  MergeRun run("merge_method: passthrough\nslices:\n  - sources:\n      - model: " + m("base") +
               "\n        layer_range: [0, 6]\n  - sources:\n      - model: " + m("ft-changelog") +
               "\n        layer_range: [4, 8]\n");
  EXPECT_EQ(run.summary.layers, 10);
  auto cfg = model::ModelConfig::load(run.out);
  EXPECT_EQ(cfg.num_layers, 10);
  io::Checkpoint out(run.out), src(test::model_dir("ft-changelog"));
  const auto& a = out.get("model.layers.6.self_attn.q_proj.weight");
  const auto& b = src.get("model.layers.4.self_attn.q_proj.weight");
  EXPECT_EQ(0, std::memcmp(a.bytes.data(), b.bytes.data(), a.bytes.size()));
  EXPECT_NO_THROW(model::Transformer::load(run.out));
}

TEST(Merge, ShardsAtTheRequestedSize) {
  test::TempDir dir;
  io::write_text_file(dir / "c.yaml", "merge_method: linear\nmodels:\n  - model: " + m("base") +
                                          "\n    parameters: {weight: 1.0}\n");
  merge::MergeOptions opts;
  opts.max_shard_bytes = 5'000'000;
  auto s = merge::run_merge(merge::MergeConfig::load(dir / "c.yaml"), dir / "out", opts);
  EXPECT_GE(s.shards, 3u);
  EXPECT_NO_THROW(io::Checkpoint ckpt(dir / "out"));
}

TEST(MergeErrors, BadConfigsAreRejectedBeforeAnyWork) {
  const std::string two = "models:\n  - model: " + m("ft-fortune") + "\n    parameters: {weight: 1}\n  - model: " +
                          m("ft-changelog") + "\n    parameters: {weight: 1}\n";
  EXPECT_NE(expect_config_error("merge_method: frankenmerge\n" + two).find("unknown merge_method 'frankenmerge'"),
            std::string::npos);
  EXPECT_NE(expect_config_error("merge_method: linear\nmodels:\n  - model: /no/such/model\n").find("/no/such/model"),
            std::string::npos);
  EXPECT_NE(expect_config_error("merge_method: linear\nmodels:\n  - model: " + m("base") +
                                "\n    parameters: {weight: 1}\n  - model: " + m("tiny-llama") +
                                "\n    parameters: {weight: 1}\n")
                .find("does not match"),
            std::string::npos);
  EXPECT_NE(expect_config_error("merge_method: slerp\nbase_model: " + m("ft-fortune") + "\n" + two +
                                "parameters:\n  t: 1.5\n")
                .find("outside [0, 1]"),
            std::string::npos);
  EXPECT_NE(expect_config_error("merge_method: linear\nnormalise: true\n" + two).find("unsupported key 'normalise'"),
            std::string::npos);
  EXPECT_NE(expect_config_error("merge_method: linear\nmodels:\n  - model: " + m("base") + "\n  - model: " +
                                m("ft-fortune") + "\n")
                .find("missing required parameter 'weight'"),
            std::string::npos);
  EXPECT_NE(expect_config_error("merge_method: ties\n" + two).find("needs base_model"), std::string::npos);
  EXPECT_NE(expect_config_error("merge_method: linear\nmodels: [\n").find("not valid YAML"), std::string::npos);
}

TEST(MergeErrors, ExistingOutputSurvivesAFailedMerge) {
  test::TempDir dir;
  std::filesystem::create_directory(dir / "out");
  io::write_text_file(dir / "out" / "keep.txt", "precious");
  io::write_text_file(dir / "c.yaml", "merge_method: slerp\nbase_model: " + m("ft-fortune") +
                                          "\nmodels:\n  - model: " + m("ft-fortune") + "\n  - model: " +
                                          m("ft-changelog") + "\nparameters: {t: -1}\n");
  EXPECT_THROW(merge::run_merge(merge::MergeConfig::load(dir / "c.yaml"), dir / "out", {}), Error);
  EXPECT_EQ(io::read_text_file(dir / "out" / "keep.txt"), "precious");
}

// The real pair: TIES (configs/ties.yaml's settings) must keep both skills. Base scores 552 on
// fortune.val and 626 on changelog.val; the specialists 45.2 and 8.8. The merge measured 71.2
// and 20.8; the bounds (2x and 3x the specialists') leave room for fp32 reordering while still
// failing a merge that loses either skill.
TEST(Merge, TiesOfTheFixturePairKeepsBothSkills) {
  MergeRun run("merge_method: ties\nbase_model: " + m("base") + "\nmodels:\n  - model: " + m("ft-fortune") +
               "\n    parameters: {weight: 0.7, density: 0.7}\n  - model: " + m("ft-changelog") +
               "\n    parameters: {weight: 0.7, density: 0.7}\nparameters: {normalize: false}\ndtype: bfloat16\n");
  auto merged = model::Transformer::load(run.out);
  auto tok = tokenizer::Tokenizer::load(run.out);
  eval::PerplexityOptions opts;
  opts.threads = 2;
  auto score = [&](const char* file) {
    return eval::evaluate_perplexity(*merged, tok.encode(io::read_text_file(test::shared_dir() / "data" / file)), opts)
        .perplexity;
  };
  double fortune = score("fortune.val.txt"), changelog = score("changelog.val.txt");
  std::printf("  ties merge: fortune.val %.2f, changelog.val %.2f\n", fortune, changelog);
  EXPECT_LT(fortune, 2 * 45.19);
  EXPECT_LT(changelog, 3 * 8.81);
}
