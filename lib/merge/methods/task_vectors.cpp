#include "merge/methods/task_vectors.h"


#include <cmath>
#include <cstring>

#include "merge/block_kernel.h"

namespace anvil::merge {

std::vector<ParamDef> TaskVectorMerge::parameters() const {
  return {{"normalize", o_.default_normalize ? 1.0 : 0.0},
          {"rescale", o_.default_rescale ? 1.0 : 0.0},
          {"lambda", 1.0},     // scales the mixed delta (after normalize)
          {"int8_mask", 0.0}};  // mergekit's memory option; results are the same without it
}

std::vector<ParamDef> TaskVectorMerge::tensor_parameters() const {
  std::vector<ParamDef> defs{{"weight", std::nullopt}, {"density", 1.0}};
  if (o_.sparsify == Sparsify::MagnitudeOutliers) defs.push_back({"gamma", 0.01});
  if (o_.sparsify == Sparsify::DellaMagprune) defs.push_back({"epsilon", 0.15});
  return defs;
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

namespace {

// A seeded Bernoulli draw per element from a counter-based generator (SplitMix64's finaliser of
// the seed and the element's index): element i is kept when the hash's top 24 bits, as a
// fraction of 2^24, are below its probability. Each draw is independent of the others and
// branch-free, where LibTorch's bernoulli runs a sequential Mersenne Twister per element (most
// of DARE's and DELLA's time on a 1B pair).
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// The key is the seed mixed first: seeds that differ by multiples of the increment (one model's
// seed and the next's) would otherwise give the same draws shifted by an element.
inline float uniform24(uint64_t key, uint64_t i) {
  return static_cast<float>(mix64(key + (i + 1) * 0x9E3779B97F4A7C15ull) >> 40) * (1.0f / 16777216.0f);
}

// x (fp32, CPU) with each element kept with probability probability(i), else 0.
template <typename Probability>
at::Tensor keep_randomly(const at::Tensor& x, uint64_t seed, Probability probability) {
  at::Tensor out = x.to(at::kCPU, at::kFloat).contiguous().clone();
  float* p = out.data_ptr<float>();
  const int64_t n = out.numel();
  const uint64_t key = mix64(mix64(seed) ^ 0x5851F42D4C957F2Dull);
  for (int64_t i = 0; i < n; ++i) {
    const bool keep = uniform24(key, static_cast<uint64_t>(i)) < probability(i);
    p[i] = keep ? p[i] : 0.0f;
  }
  return out;
}

}  // namespace

at::Tensor keep_with_probabilities(const at::Tensor& x, const at::Tensor& probabilities, uint64_t seed) {
  const at::Tensor pr = probabilities.to(at::kCPU, at::kFloat).contiguous();
  const float* p = pr.data_ptr<float>();
  return keep_randomly(x, seed, [p](int64_t i) { return p[i]; });
}

at::Tensor sparsify_random(const at::Tensor& delta, double density, uint64_t seed) {
  if (density >= 1) return delta;
  const float d = static_cast<float>(density);
  return keep_randomly(delta, seed, [d](int64_t) { return d; }).to(delta.device());
}

at::Tensor sparsify_della(const at::Tensor& delta, double density, double epsilon, uint64_t seed) {
  if (density >= 1) return delta;
  if (density <= 0) return at::zeros_like(delta);
  // Rows along dim 1, as mergekit ranks them; a vector is one row.
  at::Tensor rows = delta.dim() < 2 ? delta.reshape({1, -1}) : delta.movedim(1, -1);
  const auto moved_shape = rows.sizes().vec();
  const int64_t cols = moved_shape.back();
  rows = rows.reshape({-1, cols}).to(at::kCPU).contiguous();
  // Each entry's rank by |delta| within its row, equal magnitudes in index order (mergekit's
  // argsort breaks such ties in whatever order its sort leaves them): a stable LSD radix sort on
  // the bits of |x| (for non-negative floats their order), 4 passes of 8 bits, linear in the row
  // where LibTorch's stable sort was most of DELLA's time.
  rows = rows.to(at::kFloat).contiguous();
  at::Tensor rank_norm = at::empty(rows.sizes(), at::kFloat);
  {
    const float* x = rows.data_ptr<float>();
    float* out = rank_norm.data_ptr<float>();
    const int64_t n_rows = rows.size(0);
    std::vector<uint32_t> key(static_cast<size_t>(cols)), key2(key.size());
    std::vector<int32_t> idx(key.size()), idx2(key.size());
    for (int64_t r = 0; r < n_rows; ++r) {
      const float* row = x + r * cols;
      for (int64_t i = 0; i < cols; ++i) {
        uint32_t bits;
        const float a = std::fabs(row[i]);
        std::memcpy(&bits, &a, 4);
        key[static_cast<size_t>(i)] = bits;
        idx[static_cast<size_t>(i)] = static_cast<int32_t>(i);
      }
      for (int shift = 0; shift < 32; shift += 8) {
        size_t count[257] = {};
        for (int64_t i = 0; i < cols; ++i) ++count[((key[static_cast<size_t>(i)] >> shift) & 0xFF) + 1];
        for (int b = 0; b < 256; ++b) count[b + 1] += count[b];
        for (int64_t i = 0; i < cols; ++i) {
          const size_t at = count[(key[static_cast<size_t>(i)] >> shift) & 0xFF]++;
          key2[at] = key[static_cast<size_t>(i)];
          idx2[at] = idx[static_cast<size_t>(i)];
        }
        key.swap(key2);
        idx.swap(idx2);
      }
      float* o = out + r * cols;
      for (int64_t k = 0; k < cols; ++k)
        o[idx[static_cast<size_t>(k)]] = cols > 1 ? static_cast<float>(k) / static_cast<float>(cols - 1) : 0.5f;
    }
  }
  auto probs = (rank_norm * 2 * epsilon + (density - epsilon)).clamp(0, 1);
  auto kept = keep_with_probabilities(rows, probs, seed);
  kept = kept.view(moved_shape);
  if (delta.dim() >= 2) kept = kept.movedim(-1, 1);
  return kept.reshape(delta.sizes()).to(delta.device());
}

namespace {

uint32_t magnitude_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u & 0x7fffffffu;  // |x|: for non-negative floats the bit pattern orders like the value
}

// Layout of a selector's slots: [0, 65536) high-half histogram, [65536, 131072) low-half
// histogram of the boundary bucket, then bookkeeping.
enum Meta : size_t { kTotal = 131072, kBucket, kAbove, kThreshold, kNeedEqual, kSeenEqual, kState, kSweep };
static_assert(kSweep < MagnitudeSelector::kSlots);

}  // namespace

double MagnitudeSelector::total() const { return s_[kTotal]; }

void MagnitudeSelector::count(const float* d, int64_t n, int pass, int64_t k_count) {
  if (pass == 0) {
    for (int64_t i = 0; i < n; ++i) s_[magnitude_bits(d[i]) >> 16] += 1;
    s_[kTotal] += static_cast<double>(n);
    return;
  }
  if (s_[kState] == 0) {
    // Pass 0 is complete: the bucket (high 16 bits) holding the k-th largest magnitude.
    const double k = static_cast<double>(k_count);
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

void MagnitudeSelector::keep(float* d, int64_t n, int64_t k_count, int sweep) {
  const double k = static_cast<double>(k_count);
  if (s_[kState] == 1) {
    // Pass 1 is complete: the exact threshold, and how many entries equal to it to keep.
    double cum = s_[kAbove];
    int low = 65535;
    while (low > 0 && cum + s_[65536 + low] < k) cum += s_[65536 + low--];
    s_[kThreshold] = static_cast<double>((static_cast<uint32_t>(s_[kBucket]) << 16) | static_cast<uint32_t>(low));
    s_[kNeedEqual] = k - cum;
    s_[kSeenEqual] = 0;
    s_[kSweep] = sweep;
    s_[kState] = 2;
  }
  if (s_[kSweep] != sweep) {  // a new sweep over the chunks: count the kept equal entries afresh
    s_[kSeenEqual] = 0;
    s_[kSweep] = sweep;
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

namespace {

// Selectors per input: magnitude keeps a top-k (one), breadcrumbs a top-k minus a smaller top-k
// (two). After them each input's statistics hold its L1 norms before and after sparsification.
size_t selectors(Sparsify s) { return s == Sparsify::Magnitude ? 1 : s == Sparsify::MagnitudeOutliers ? 2 : 0; }
size_t stats_stride(Sparsify s) { return selectors(s) * MagnitudeSelector::kSlots + 2; }
constexpr float kRescaleEpsilon = 1e-7f;  // mergekit's: below it a norm is not rescaled to
constexpr int kMergeSweep = 100;         // keep()'s sweep id for merging (statistics passes use theirs)

// The ranks a magnitude selection keeps, in mergekit's integer arithmetic: the `outer` largest
// minus the `inner` largest (breadcrumbs' gamma outliers; n_top shrinks when density + gamma > 1).
struct KeptRanks {
  int64_t outer, inner;
};
KeptRanks kept_ranks(Sparsify s, double total, const MergeInput& in) {
  const int64_t n = static_cast<int64_t>(total);
  const int64_t target = static_cast<int64_t>(in.params.at("density") * static_cast<double>(n));
  if (s == Sparsify::Magnitude) return {target, 0};
  int64_t top = static_cast<int64_t>(in.params.at("gamma") * static_cast<double>(n));
  const int64_t bottom = n - target - top;
  if (bottom < 0) top += bottom;
  return {target + top, top};
}

double abs_sum(const at::Tensor& t) {  // sequential, so the same for any thread count
  const float* p = t.data_ptr<float>();
  double s = 0;
  for (int64_t i = 0, n = t.numel(); i < n; ++i) s += std::abs(p[i]);
  return s;
}

bool any_sparsified(const MergeTask& task) {
  for (const auto& in : task.inputs)
    if (!in.is_base && in.params.at("density") < 1) return true;
  return false;
}

}  // namespace

int TaskVectorMerge::statistics_passes(const MergeTask& task) const {
  if (o_.sparsify == Sparsify::None || !any_sparsified(task)) return 0;
  return (selectors(o_.sparsify) ? 2 : 0) + (task.params.at("rescale") != 0 ? 1 : 0);
}

size_t TaskVectorMerge::statistics_size(size_t n_inputs) const {
  return o_.sparsify == Sparsify::None ? 0 : n_inputs * stats_stride(o_.sparsify);
}

// Input `j`'s delta (CPU, contiguous fp32) as its sparsification leaves it, before rescaling.
at::Tensor TaskVectorMerge::sparsified(const MergeTask& task, size_t j, const at::Tensor& delta,
                                       std::vector<double>& stats, int sweep) const {
  const MergeInput& in = task.inputs[j];
  const double density = in.params.at("density");
  // Random masks: one stream per input (the base does not count), as before breadcrumbs/DELLA.
  uint64_t index = 0;
  for (size_t i = 0; i <= j; ++i) index += task.inputs[i].is_base ? 0 : 1;
  const uint64_t seed = task.seed + index * 0x9E3779B97F4A7C15ull;
  double* st = stats.empty() ? nullptr : stats.data() + j * stats_stride(o_.sparsify);
  switch (o_.sparsify) {
    case Sparsify::None: return delta;
    case Sparsify::Random: return sparsify_random(delta, density, seed);
    case Sparsify::DellaMagprune: return sparsify_della(delta, density, in.params.at("epsilon"), seed);
    case Sparsify::Magnitude:
    case Sparsify::MagnitudeOutliers: {
      MagnitudeSelector outer(st);
      const KeptRanks r = kept_ranks(o_.sparsify, outer.total(), in);
      auto out = delta.clone();
      outer.keep(out.data_ptr<float>(), out.numel(), r.outer, sweep);
      if (o_.sparsify == Sparsify::MagnitudeOutliers) {
        auto largest = delta.clone();
        MagnitudeSelector(st + MagnitudeSelector::kSlots).keep(largest.data_ptr<float>(), largest.numel(), r.inner, sweep);
        out.masked_fill_(largest != 0, 0.0f);
      }
      return out;
    }
  }
  return delta;
}

void TaskVectorMerge::accumulate(const MergeTask& chunk, int pass, std::vector<double>& stats) const {
  const MergeInput* base = chunk.base();
  const int selection_passes = selectors(o_.sparsify) ? 2 : 0;
  for (size_t j = 0; j < chunk.inputs.size(); ++j) {
    const MergeInput& in = chunk.inputs[j];
    if (&in == base || in.params.at("density") >= 1) continue;
    auto delta = (in.tensor - base->tensor).to(at::kCPU).contiguous();
    double* st = stats.data() + j * stats_stride(o_.sparsify);
    if (pass < selection_passes) {
      for (size_t s = 0; s < selectors(o_.sparsify); ++s) {
        MagnitudeSelector sel(st + s * MagnitudeSelector::kSlots);
        const KeptRanks r = kept_ranks(o_.sparsify, MagnitudeSelector(st).total(), in);
        sel.count(delta.data_ptr<float>(), delta.numel(), pass, s == 0 ? r.outer : r.inner);
      }
      continue;
    }
    // The rescale pass: L1 norms before and after sparsification.
    double* l1 = st + selectors(o_.sparsify) * MagnitudeSelector::kSlots;
    l1[0] += abs_sum(delta);
    l1[1] += abs_sum(sparsified(chunk, j, delta, stats, pass));
  }
}

at::Tensor sum_over_models(const at::Tensor& stacked) {
  at::Tensor sum = stacked[0].clone();
  for (int64_t k = 1; k < stacked.size(0); ++k) sum.add_(stacked[k]);
  return sum;
}

at::Tensor variance_over_models(const at::Tensor& stacked) {
  const at::Tensor x = stacked.to(at::kFloat).contiguous();
  const int64_t n = x.size(0), m = n > 0 ? x.numel() / n : 0;
  std::vector<double> mean(static_cast<size_t>(m), 0.0), m2(static_cast<size_t>(m), 0.0);
  const float* p = x.data_ptr<float>();
  for (int64_t k = 0; k < n; ++k) {  // one model at a time: the element loop vectorizes
    const double count = static_cast<double>(k + 1);
    const float* row = p + k * m;
    for (int64_t i = 0; i < m; ++i) {
      const double v = row[i], delta = v - mean[i];
      mean[i] += delta / count;
      m2[i] += delta * (v - mean[i]);
    }
  }
  at::Tensor out = at::empty(x.sizes().slice(1), x.options());
  float* o = out.data_ptr<float>();
  for (int64_t i = 0; i < m; ++i) o[i] = static_cast<float>(m2[i] / static_cast<double>(n));
  return out;
}

at::Tensor sign_consensus_mask(const at::Tensor& weighted) {
  auto majority = at::where(sum_over_models(weighted) >= 0, 1.0, -1.0).to(weighted.scalar_type());
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
  const double lambda = task.params.at("lambda");
  for (const auto& in : task.inputs) f.coeffs.push_back(&in == base ? 0.0 : in.params.at("weight") / divisor * lambda);
  return f;
}

void TaskVectorMerge::check(const MergeTask& task) const {
  if (!task.base()) throw_merge_error(task, std::string(o_.name) + " needs base_model among the inputs");
  for (const auto& in : task.inputs) {
    const double density = in.params.at("density");
    if (!(density >= 0 && density <= 1)) throw_merge_error(task, "density " + std::to_string(density) + " is outside [0, 1]");
    if (in.is_base || density <= 0 || density >= 1) continue;
    if (o_.sparsify == Sparsify::MagnitudeOutliers) {
      const double gamma = in.params.at("gamma");
      if (!(gamma >= 0 && gamma <= 1)) throw_merge_error(task, "gamma " + std::to_string(gamma) + " is outside [0, 1]");
    }
    if (o_.sparsify == Sparsify::DellaMagprune) {
      // mergekit's rule: every keep probability density +/- epsilon must lie strictly inside (0, 1).
      const double epsilon = in.params.at("epsilon");
      if (!(epsilon >= 0) || density + epsilon >= 1 || density - epsilon <= 0)
        throw_merge_error(task, "epsilon " + std::to_string(epsilon) + " with density " + std::to_string(density) +
                                    ": density +/- epsilon must lie inside (0, 1)");
    }
  }
  if (!std::isfinite(task.params.at("lambda"))) throw_merge_error(task, "lambda must be a finite number");
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
    lambda_ = static_cast<float>(task.params.at("lambda"));
    deltas_.resize(inputs_.size() * kBlockElements);
    mixed_.resize(kBlockElements);
    divisor_.resize(kBlockElements);
    majority_.resize(kBlockElements);
  }

  void accumulate(const float* const* x, int64_t n, int pass, std::vector<double>& stats) override {
    for (size_t k = 0; k < inputs_.size(); ++k) {
      if (densities_[k] >= 1) continue;
      float* d = delta(k, x, n);
      MagnitudeSelector sel(stats.data() + static_cast<size_t>(inputs_[k]) * stats_stride(o_.sparsify));
      sel.count(d, n, pass, kept(sel, k));
    }
  }

  // Loops run over elements innermost (vectorizable); each element still sees its sums in input
  // order, as the tensor code computes them.
  void merge(const float* const* x, int64_t n, float* out, std::vector<double>* stats) override {
    const size_t K = inputs_.size();
    for (size_t k = 0; k < K; ++k) {
      float* d = delta(k, x, n);
      if (o_.sparsify == Sparsify::Magnitude && densities_[k] < 1) {
        MagnitudeSelector sel(stats->data() + static_cast<size_t>(inputs_[k]) * stats_stride(o_.sparsify));
        sel.keep(d, n, kept(sel, k), kMergeSweep);
      }
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
      for (int64_t i = 0; i < n; ++i) mixed[i] /= divisor[i];
    if (lambda_ != 1.0f)
      for (int64_t i = 0; i < n; ++i) mixed[i] *= lambda_;
    for (int64_t i = 0; i < n; ++i) out[i] = base[i] + mixed[i];
  }

 private:
  static constexpr int64_t kBlockElements = kMergeBlock;

  int64_t kept(const MagnitudeSelector& sel, size_t k) const {  // mergekit's int(density * numel)
    return static_cast<int64_t>(densities_[k] * sel.total());
  }

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
  float lambda_ = 1.0f;
  std::vector<float> deltas_, mixed_, divisor_, majority_;
};

}  // namespace

std::unique_ptr<BlockKernel> TaskVectorMerge::block_kernel(const MergeTask& task) const {
  // Random drops, breadcrumbs' two selections and rescaling run as tensor operations.
  if (!task.base() || (o_.sparsify != Sparsify::None && o_.sparsify != Sparsify::Magnitude)) return nullptr;
  if (o_.sparsify == Sparsify::Magnitude && task.params.at("rescale") != 0 && any_sparsified(task)) return nullptr;
  if (o_.sparsify == Sparsify::None && !o_.sign_consensus) return nullptr;  // linear_form covers it
  return std::make_unique<TaskVectorKernel>(o_, task);
}

at::Tensor TaskVectorMerge::merge(const MergeTask& task) const {
  const MergeInput* base = task.base();
  if (!base) throw_merge_error(task, std::string(o_.name) + " needs base_model");
  // Called on a whole tensor without the runner's statistics: gather them here, in one chunk.
  const int passes = statistics_passes(task);
  std::vector<double> own_stats;
  std::vector<double>& stats = task.stats ? *task.stats : own_stats;
  if (!task.stats && passes > 0) {
    own_stats.assign(statistics_size(task.inputs.size()), 0.0);
    for (int pass = 0; pass < passes; ++pass) accumulate(task, pass, own_stats);
  }
  const bool rescale = task.params.at("rescale") != 0;
  std::vector<at::Tensor> deltas;
  std::vector<double> weights;
  for (size_t j = 0; j < task.inputs.size(); ++j) {
    const MergeInput& in = task.inputs[j];
    if (&in == base) continue;
    at::Tensor delta = in.tensor - base->tensor;
    if (o_.sparsify != Sparsify::None && in.params.at("density") < 1) {
      auto kept = sparsified(task, j, delta.to(at::kCPU).contiguous(), stats, kMergeSweep);
      if (rescale) {  // back to the task vector's L1 norm, unless either norm is ~0 (as mergekit)
        const double* l1 = stats.data() + j * stats_stride(o_.sparsify) + selectors(o_.sparsify) * MagnitudeSelector::kSlots;
        const float before = static_cast<float>(l1[0]), after = static_cast<float>(l1[1]);
        if (before >= kRescaleEpsilon && after >= kRescaleEpsilon) kept.mul_(before / after);
      }
      delta = kept.to(in.tensor.device());
    }
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
    mixed = sum_over_models(weighted * mask);
    divisor = sum_over_models((w * mask).contiguous());
    divisor.masked_fill_(divisor == 0, 1.0);
  } else {
    mixed = sum_over_models(weighted);
    divisor = w.sum(0);
    divisor.masked_fill_(divisor.abs() < 1e-8, 1.0);
  }
  if (task.params.at("normalize") != 0) mixed.div_(divisor);
  const double lambda = task.params.at("lambda");
  if (lambda != 1) mixed.mul_(lambda);
  return base->tensor + mixed;
}

}  // namespace anvil::merge
