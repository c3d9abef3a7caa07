#include "merge/methods/task_vectors.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <cstring>

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
  const double need = s_[kNeedEqual];
  double seen = s_[kSeenEqual];
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u = magnitude_bits(d[i]);
    bool kept = k > 0 && (u > threshold || (u == threshold && seen < need));
    if (kept && u == threshold) seen += 1;
    if (!kept) d[i] = 0.0f;
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
