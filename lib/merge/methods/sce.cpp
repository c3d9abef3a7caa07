// sce (Select, Calculate, Erase; arXiv 2408.07990, as mergekit computes it): with select_topk < 1
// only the elements where the task vectors vary most across models are kept (the top
// int(select_topk x nonzero variances) of their per-element variance); each model's weight is
// the mean square of its (selected) task vector over the tensor, normalized to sum 1 (equal
// weights where they are all ~0); TIES's sign election erases disagreeing entries, and the
// agreeing ones are averaged by their weights onto the base. No per-model parameters.
//
// Streams like the task-vector family: two passes select by variance (the exact radix select),
// one more sums each model's squares, then each chunk merges.
#include <cmath>

#include "merge/methods/task_vectors.h"

namespace anvil::merge {
namespace {

constexpr int kMergeSweep = 100;  // the selector's sweep id for merging

class SceMerge final : public MergeMethod {
 public:
  std::string_view name() const override { return "sce"; }
  std::vector<ParamDef> parameters() const override { return {{"select_topk", 1.0}, {"int8_mask", 0.0}}; }
  bool needs_base_model() const override { return true; }
  bool chunkable() const override { return true; }

  void check(const MergeTask& task) const override {
    if (!task.base()) throw_merge_error(task, "sce needs base_model among the inputs");
    const double topk = task.params.at("select_topk");
    if (!(topk >= 0 && topk <= 1)) throw_merge_error(task, "select_topk " + std::to_string(topk) + " is outside [0, 1]");
  }

  int statistics_passes(const MergeTask& task) const override { return (selecting(task) ? 2 : 0) + 1; }
  // [selector slots][nonzero variances][elements][sum of squares of each input's selected task vector]
  size_t statistics_size(size_t n_inputs) const override { return kSquares + n_inputs; }

  void accumulate(const MergeTask& chunk, int pass, std::vector<double>& stats) const override {
    auto tvs = task_vectors(chunk);
    if (!tvs.defined()) return;
    if (selecting(chunk) && pass < 2) {
      auto var = variance(tvs);
      if (pass == 0) stats[kNonzero] += static_cast<double>((var != 0).sum().item<int64_t>());
      MagnitudeSelector(stats.data()).count(var.data_ptr<float>(), var.numel(), pass, kept(chunk, stats));
      return;
    }
    tvs = selected(chunk, tvs, stats, pass);
    stats[kElements] += static_cast<double>(tvs[0].numel());
    size_t k = 0;
    for (size_t j = 0; j < chunk.inputs.size(); ++j) {
      if (chunk.inputs[j].is_base) continue;
      auto row = tvs[static_cast<int64_t>(k++)].contiguous();
      const float* p = row.data_ptr<float>();
      double s = 0;
      for (int64_t i = 0, n = row.numel(); i < n; ++i) s += static_cast<double>(p[i]) * p[i];
      stats[kSquares + j] += s;
    }
  }

  at::Tensor merge(const MergeTask& task) const override {
    check(task);
    const MergeInput* base = task.base();
    if (task.params.at("select_topk") <= 0) return base->tensor;  // nothing selected: base + 0
    std::vector<double> own_stats;
    std::vector<double>& stats = task.stats ? *task.stats : own_stats;
    if (!task.stats) {
      own_stats.assign(statistics_size(task.inputs.size()), 0.0);
      for (int pass = 0; pass < statistics_passes(task); ++pass) accumulate(task, pass, own_stats);
    }
    auto tvs = task_vectors(task);
    if (!tvs.defined()) return base->tensor;
    tvs = selected(task, tvs, stats, kMergeSweep);
    const auto erase = sign_consensus_mask(tvs).to(at::kFloat);
    // Weights: mean squares over the whole tensor (summed by the last statistics pass), normalized.
    std::vector<float> weights;
    float weight_sum = 0;
    for (size_t j = 0; j < task.inputs.size(); ++j) {
      if (task.inputs[j].is_base) continue;
      weights.push_back(static_cast<float>(stats[kSquares + j] / stats[kElements]));
      weight_sum += weights.back();
    }
    for (float& w : weights) w = std::abs(weight_sum) < 1e-6f ? 1.0f / static_cast<float>(weights.size()) : w / weight_sum;
    std::vector<int64_t> wshape(tvs.dim(), 1);
    wshape[0] = static_cast<int64_t>(weights.size());
    auto w = at::tensor(weights, at::TensorOptions().dtype(at::kFloat)).view(wshape);
    auto erased_weights = w * erase;
    auto merged = sum_over_models(tvs * erased_weights) / sum_over_models(erased_weights).clamp_min(1e-6);
    return base->tensor + merged.to(base->tensor.device());
  }

 private:
  static constexpr size_t kNonzero = MagnitudeSelector::kSlots;
  static constexpr size_t kElements = kNonzero + 1;
  static constexpr size_t kSquares = kElements + 1;

  static bool selecting(const MergeTask& task) {
    const double topk = task.params.at("select_topk");
    return topk > 0 && topk < 1;
  }
  // mergekit's k: int(nonzero variances x select_topk), known after pass 0.
  static int64_t kept(const MergeTask& task, const std::vector<double>& stats) {
    return static_cast<int64_t>(stats[kNonzero] * task.params.at("select_topk"));
  }
  // [models, ...] fp32 on the CPU, contiguous; undefined when only the base is there.
  static at::Tensor task_vectors(const MergeTask& task) {
    const MergeInput* base = task.base();
    std::vector<at::Tensor> tvs;
    for (const auto& in : task.inputs)
      if (!in.is_base) tvs.push_back(in.tensor - base->tensor);
    if (tvs.empty()) return {};
    return at::stack(tvs, 0).to(at::kCPU, at::kFloat).contiguous();
  }

  static at::Tensor variance(const at::Tensor& tvs) { return variance_over_models(tvs); }

  // The task vectors with the unselected elements zeroed.
  static at::Tensor selected(const MergeTask& task, const at::Tensor& tvs, std::vector<double>& stats, int sweep) {
    if (!selecting(task)) return tvs;
    auto var = variance(tvs);
    MagnitudeSelector(stats.data()).keep(var.data_ptr<float>(), var.numel(), kept(task, stats), sweep);
    return tvs * (var != 0).to(at::kFloat).unsqueeze(0);
  }
};

}  // namespace

std::unique_ptr<MergeMethod> make_sce() { return std::make_unique<SceMerge>(); }

}  // namespace anvil::merge
