#include "merge/methods/task_vectors.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <cstring>

#include "merge/block_kernel.h"

namespace anvil::merge {

std::vector<ParamDef> TaskVectorMerge::parameters() const {
  return {{"normalize", o_.default_normalize ? 1.0 : 0.0},
          {"rescale", o_.default_rescale ? 1.0 : 0.0},
          {"int8_mask", 0.0}};  // mergekit's memory option; results are the same without it
}

std::vector<ParamDef> TaskVectorMerge::tensor_parameters() const {
  return {{"weight", std::nullopt}, {"density", 1.0}};
}

at::Tensor sparsify_magnitude(const at::Tensor& delta, double density) {
  if (density >= 1) return delta;
  int64_t k = static_cast<int64_t>(density * static_cast<double>(delta.numel()));
  if (k <= 0) return at::zeros_like(delta);
  auto flat = delta.reshape({-1});
  auto keep = std::get<1>(flat.abs().topk(k, 0, /*largest=*/true, /*sorted=*/false));
  auto mask = at::zeros_like(flat);
  mask.index_fill_(0, keep, 1.0);
  return (flat * mask).view(delta.sizes());
}

at::Tensor sparsify_random(const at::Tensor& delta, double density, bool rescale, uint64_t seed) {
  if (density >= 1) return delta;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto probs = at::full(delta.sizes(), density, at::TensorOptions().dtype(at::kFloat));
  auto mask = at::bernoulli(probs, gen).to(delta.device());
  auto out = delta * mask;
  if (rescale && density > 0) out.div_(density);
  return out;
}

namespace {

uint32_t magnitude_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u & 0x7fffffffu;  // |x|: for non-negative floats the bit pattern orders like the value
}

// Layout of a selector's slots: [0, 65536) high-half histogram, [65536, 131072) low-half
// histogram of the boundary bucket, then bookkeeping.
enum Meta : size_t { kTotal = 131072, kBucket, kAbove, kThreshold, kNeedEqual, kSeenEqual, kState };

}  // namespace

void MagnitudeSelector::count(const float* d, int64_t n, int pass, double density) {
  if (pass == 0) {
    for (int64_t i = 0; i < n; ++i) s_[magnitude_bits(d[i]) >> 16] += 1;
    s_[kTotal] += static_cast<double>(n);
    return;
  }
  if (s_[kState] == 0) {
    // Pass 0 is complete: the bucket (high 16 bits) holding the k-th largest magnitude.
    const double k = std::floor(density * s_[kTotal]);
    double above = 0;
    int b = 65535;
    while (b > 0 && above + s_[b] < k) above += s_[b--];
    s_[kBucket] = b;
    s_[kAbove] = above;
    s_[kState] = 1;
  }
  const uint32_t bucket = static_cast<uint32_t>(s_[kBucket]);
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u = magnitude_bits(d[i]);
    if ((u >> 16) == bucket) s_[65536 + (u & 0xffff)] += 1;
  }
}

void MagnitudeSelector::keep(float* d, int64_t n, double density) {
  const double k = std::floor(density * s_[kTotal]);
  if (s_[kState] == 1) {
    // Pass 1 is complete: the exact threshold, and how many entries equal to it to keep.
    double cum = s_[kAbove];
    int low = 65535;
    while (low > 0 && cum + s_[65536 + low] < k) cum += s_[65536 + low--];
    s_[kThreshold] = static_cast<double>((static_cast<uint32_t>(s_[kBucket]) << 16) | static_cast<uint32_t>(low));
    s_[kNeedEqual] = k - cum;
    s_[kSeenEqual] = 0;
    s_[kState] = 2;
  }
  const uint32_t threshold = static_cast<uint32_t>(s_[kThreshold]);
  if (k <= 0) {
    std::fill(d, d + n, 0.0f);
    return;
  }
  // Below the threshold: dropped (a vectorizable pass). Equal to it: kept in index order until
  // exactly k are kept; such entries are rare, so they get a second, sequential pass.
  int64_t equal = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t u = magnitude_bits(d[i]);
    equal += u == threshold;
    d[i] = u < threshold ? 0.0f : d[i];
  }
  double seen = s_[kSeenEqual];
  const double need = s_[kNeedEqual];
  for (int64_t i = 0; equal > 0 && i < n; ++i) {
    if (magnitude_bits(d[i]) != threshold) continue;
    --equal;
    if (seen < need) seen += 1;
    else d[i] = 0.0f;
  }
  s_[kSeenEqual] = seen;
}

size_t TaskVectorMerge::statistics_size(size_t n_inputs) const {
  return o_.sparsify == Sparsify::Magnitude ? n_inputs * MagnitudeSelector::kSlots : 0;
}

void TaskVectorMerge::accumulate(const MergeTask& chunk, int pass, std::vector<double>& stats) const {
  const MergeInput* base = chunk.base();
  for (size_t j = 0; j < chunk.inputs.size(); ++j) {
    const MergeInput& in = chunk.inputs[j];
    const double density = in.params.at("density");
    if (&in == base || density >= 1) continue;
    auto delta = (in.tensor - base->tensor).to(at::kCPU).contiguous();
    MagnitudeSelector(stats.data() + j * MagnitudeSelector::kSlots).count(delta.data_ptr<float>(), delta.numel(), pass, density);
  }
}

at::Tensor sign_consensus_mask(const at::Tensor& weighted) {
  auto majority = at::where(weighted.sum(0) >= 0, 1.0, -1.0).to(weighted.scalar_type());
  return weighted.sign() == majority;
}

std::optional<LinearForm> TaskVectorMerge::linear_form(const MergeTask& task) const {
  // Plain task arithmetic only: sparsification and sign election are not linear.
  if (o_.sparsify != Sparsify::None || o_.sign_consensus) return std::nullopt;
  const MergeInput* base = task.base();
  if (!base) return std::nullopt;
  LinearForm f;
  f.delta_base = static_cast<int>(base - task.inputs.data());
  double sum = 0;
  for (const auto& in : task.inputs)
    if (&in != base) sum += in.params.at("weight");
  const double divisor = task.params.at("normalize") != 0 && std::abs(sum) >= 1e-8 ? sum : 1.0;
  for (const auto& in : task.inputs) f.coeffs.push_back(&in == base ? 0.0 : in.params.at("weight") / divisor);
  return f;
}

void TaskVectorMerge::check(const MergeTask& task) const {
  if (!task.base()) throw_merge_error(task, std::string(o_.name) + " needs base_model among the inputs");
  for (const auto& in : task.inputs) {
    double density = in.params.at("density");
    if (density < 0 || density > 1) throw_merge_error(task, "density " + std::to_string(density) + " is outside [0, 1]");
  }
}

namespace {

// TIES (and magnitude-trimmed task arithmetic) element by element: the same float operations as
// merge()'s tensor code, in the same order.
class TaskVectorKernel final : public BlockKernel {
 public:
  TaskVectorKernel(const TaskVectorOptions& o, const MergeTask& task) : o_(o) {
    base_ = static_cast<int>(task.base() - task.inputs.data());
    for (size_t j = 0; j < task.inputs.size(); ++j) {
      if (static_cast<int>(j) == base_) continue;
      inputs_.push_back(static_cast<int>(j));
      weights_.push_back(static_cast<float>(task.inputs[j].params.at("weight")));
      densities_.push_back(task.inputs[j].params.at("density"));
    }
    normalize_ = task.params.at("normalize") != 0;
    deltas_.resize(inputs_.size() * kBlockElements);
    mixed_.resize(kBlockElements);
    divisor_.resize(kBlockElements);
    majority_.resize(kBlockElements);
  }

  void accumulate(const float* const* x, int64_t n, int pass, std::vector<double>& stats) override {
    for (size_t k = 0; k < inputs_.size(); ++k) {
      if (densities_[k] >= 1) continue;
      float* d = delta(k, x, n);
      MagnitudeSelector(stats.data() + static_cast<size_t>(inputs_[k]) * MagnitudeSelector::kSlots)
          .count(d, n, pass, densities_[k]);
    }
  }

  // Loops run over elements innermost (vectorizable); each element still sees its sums in input
  // order, as the tensor code computes them.
  void merge(const float* const* x, int64_t n, float* out, std::vector<double>* stats) override {
    const size_t K = inputs_.size();
    for (size_t k = 0; k < K; ++k) {
      float* d = delta(k, x, n);
      if (o_.sparsify == Sparsify::Magnitude && densities_[k] < 1)
        MagnitudeSelector(stats->data() + static_cast<size_t>(inputs_[k]) * MagnitudeSelector::kSlots)
            .keep(d, n, densities_[k]);
      const float w = weights_[k];
      for (int64_t i = 0; i < n; ++i) d[i] *= w;  // weighted delta
    }
    float* __restrict mixed = mixed_.data();
    float* __restrict divisor = divisor_.data();
    std::fill(mixed, mixed + n, 0.0f);
    if (o_.sign_consensus) {
      float* __restrict majority = majority_.data();
      std::fill(majority, majority + n, 0.0f);
      for (size_t k = 0; k < K; ++k) {
        const float* __restrict d = deltas_.data() + k * kBlockElements;
        for (int64_t i = 0; i < n; ++i) majority[i] += d[i];
      }
      // Comparisons as 0/1 factors, so these loops vectorize (the file is built with
      // -fno-trapping-math, without which GCC keeps a branch per element).
      for (int64_t i = 0; i < n; ++i) majority[i] = 2.0f * static_cast<float>(majority[i] >= 0) - 1.0f;
      std::fill(divisor, divisor + n, 0.0f);
      for (size_t k = 0; k < K; ++k) {
        const float* __restrict d = deltas_.data() + k * kBlockElements;
        const float w = weights_[k];
        for (int64_t i = 0; i < n; ++i) {
          const float agrees = static_cast<float>(d[i] * majority[i] > 0);  // same strict sign: 1, else 0
          mixed[i] += d[i] * agrees;
          divisor[i] += w * agrees;
        }
      }
      for (int64_t i = 0; i < n; ++i) divisor[i] += static_cast<float>(divisor[i] == 0);  // 0 -> 1
    } else {
      for (size_t k = 0; k < K; ++k) {
        const float* __restrict d = deltas_.data() + k * kBlockElements;
        for (int64_t i = 0; i < n; ++i) mixed[i] += d[i];
      }
      float weight_sum = 0;
      for (float w : weights_) weight_sum += w;
      std::fill(divisor, divisor + n, std::abs(weight_sum) < 1e-8f ? 1.0f : weight_sum);
    }
    const float* __restrict base = x[base_];
    if (normalize_)
      for (int64_t i = 0; i < n; ++i) out[i] = base[i] + mixed[i] / divisor[i];
    else
      for (int64_t i = 0; i < n; ++i) out[i] = base[i] + mixed[i];
  }

 private:
  static constexpr int64_t kBlockElements = kMergeBlock;

  float* delta(size_t k, const float* const* x, int64_t n) {
    float* d = deltas_.data() + k * kBlockElements;
    const float* xk = x[inputs_[k]];
    const float* base = x[base_];
    for (int64_t i = 0; i < n; ++i) d[i] = xk[i] - base[i];
    return d;
  }

  TaskVectorOptions o_;
  int base_ = 0;
  std::vector<int> inputs_;  // task.inputs indices of the non-base models
  std::vector<float> weights_;
  std::vector<double> densities_;
  bool normalize_ = false;
  std::vector<float> deltas_, mixed_, divisor_, majority_;
};

}  // namespace

std::unique_ptr<BlockKernel> TaskVectorMerge::block_kernel(const MergeTask& task) const {
  if (o_.sparsify == Sparsify::Random || !task.base()) return nullptr;
  if (o_.sparsify == Sparsify::None && !o_.sign_consensus) return nullptr;  // linear_form covers it
  return std::make_unique<TaskVectorKernel>(o_, task);
}

at::Tensor TaskVectorMerge::merge(const MergeTask& task) const {
  const MergeInput* base = task.base();
  if (!base) throw_merge_error(task, std::string(o_.name) + " needs base_model");
  const bool rescale = task.params.at("rescale") != 0;
  std::vector<at::Tensor> deltas;
  std::vector<double> weights;
  uint64_t index = 0;
  for (const auto& in : task.inputs) {
    if (&in == base) continue;
    ++index;
    double density = in.params.at("density");
    at::Tensor delta = in.tensor - base->tensor;
    if (o_.sparsify == Sparsify::Magnitude && task.stats && density < 1) {
      delta = delta.to(at::kCPU).contiguous();
      MagnitudeSelector(task.stats->data() + (&in - task.inputs.data()) * MagnitudeSelector::kSlots)
          .keep(delta.data_ptr<float>(), delta.numel(), density);
      delta = delta.to(in.tensor.device());
    } else if (o_.sparsify == Sparsify::Magnitude) {
      delta = sparsify_magnitude(delta, density);
    }
    else if (o_.sparsify == Sparsify::Random) delta = sparsify_random(delta, density, rescale, task.seed + index * 0x9E3779B97F4A7C15ull);
    deltas.push_back(delta);
    weights.push_back(in.params.at("weight"));
  }
  if (deltas.empty()) return base->tensor;
  auto stacked = at::stack(deltas, 0);
  std::vector<int64_t> wshape(stacked.dim(), 1);
  wshape[0] = static_cast<int64_t>(weights.size());
  auto w = at::tensor(weights, stacked.options().dtype(at::kDouble)).to(stacked.scalar_type()).view(wshape);
  auto weighted = stacked * w;
  at::Tensor mixed, divisor;
  if (o_.sign_consensus) {
    auto mask = sign_consensus_mask(weighted).to(stacked.scalar_type());
    mixed = (weighted * mask).sum(0);
    divisor = (w * mask).sum(0);
    divisor.masked_fill_(divisor == 0, 1.0);
  } else {
    mixed = weighted.sum(0);
    divisor = w.sum(0);
    divisor.masked_fill_(divisor.abs() < 1e-8, 1.0);
  }
  if (task.params.at("normalize") != 0) mixed.div_(divisor);
  return base->tensor + mixed;
}

}  // namespace anvil::merge
