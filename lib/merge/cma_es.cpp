#include "merge/cma_es.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "util/error.h"

namespace anvil::merge {

CmaEs::CmaEs(std::vector<double> start, double sigma, uint64_t seed, int population)
    : n_(static_cast<int>(start.size())), mean_(std::move(start)), sigma_(sigma), rng_(seed) {
  if (n_ < 1) fail("merge search", "nothing to search: no parameter has a range");
  const double n = n_;
  lambda_ = population > 0 ? population : 4 + static_cast<int>(std::floor(3 * std::log(n)));
  lambda_ = std::max(lambda_, 2);
  mu_ = lambda_ / 2;
  // Hansen's (49): ln((lambda + 1) / 2) - ln i for the best mu = floor(lambda / 2).
  for (int i = 0; i < mu_; ++i) weights_.push_back(std::log((lambda_ + 1) / 2.0) - std::log(i + 1.0));
  const double sum = std::accumulate(weights_.begin(), weights_.end(), 0.0);
  double sq = 0;
  for (double& w : weights_) w /= sum, sq += w * w;
  mueff_ = 1 / sq;
  cc_ = (4 + mueff_ / n) / (n + 4 + 2 * mueff_ / n);
  cs_ = (mueff_ + 2) / (n + mueff_ + 5);
  c1_ = 2 / ((n + 1.3) * (n + 1.3) + mueff_);
  cmu_ = std::min(1 - c1_, 2 * (mueff_ - 2 + 1 / mueff_) / ((n + 2) * (n + 2) + mueff_));
  damps_ = 1 + 2 * std::max(0.0, std::sqrt((mueff_ - 1) / (n + 1)) - 1) + cs_;
  chi_n_ = std::sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n));
  pc_.assign(n_, 0.0);
  ps_.assign(n_, 0.0);
  cov_.assign(static_cast<size_t>(n_ * n_), 0.0);
  for (int i = 0; i < n_; ++i) cov_[static_cast<size_t>(i * n_ + i)] = 1;
  decompose();
}

void CmaEs::decompose() {
  // cov is symmetric positive definite: its eigenvectors and the square roots of its eigenvalues.
  at::Tensor c = at::from_blob(cov_.data(), {n_, n_}, at::kDouble).clone();
  c = (c + c.t()) / 2;  // rounding can leave it a hair asymmetric
  auto [values, vectors] = at::linalg_eigh(c);
  values = values.clamp_min(1e-20).sqrt().contiguous();
  vectors = vectors.contiguous();
  scale_.assign(values.data_ptr<double>(), values.data_ptr<double>() + n_);
  basis_.assign(vectors.data_ptr<double>(), vectors.data_ptr<double>() + n_ * n_);
}

std::vector<std::vector<double>> CmaEs::ask() {
  std::normal_distribution<double> normal;
  raw_.clear();
  std::vector<std::vector<double>> clipped;
  for (int k = 0; k < lambda_; ++k) {
    std::vector<double> z(n_), x(n_);
    for (double& v : z) v = normal(rng_);
    for (int i = 0; i < n_; ++i) {
      double y = 0;  // (B D z)_i
      for (int j = 0; j < n_; ++j) y += basis_[static_cast<size_t>(i * n_ + j)] * scale_[j] * z[j];
      x[i] = mean_[i] + sigma_ * y;
    }
    raw_.push_back(x);
    for (double& v : x) v = std::clamp(v, 0.0, 1.0);
    clipped.push_back(std::move(x));
  }
  return clipped;
}

void CmaEs::tell(const std::vector<double>& values) {
  if (values.size() != raw_.size()) fail("merge search", "CMA-ES was told a different number of values than it asked");
  // The box penalty: evaluated at the clipped point, ranked as if a little worse the further out.
  std::vector<double> ranked(values.size());
  for (size_t k = 0; k < values.size(); ++k) {
    double out = 0;
    for (double v : raw_[k]) out += std::pow(v - std::clamp(v, 0.0, 1.0), 2);
    ranked[k] = values[k] + 1e-3 * out;
  }
  std::vector<size_t> order(values.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranked[a] < ranked[b]; });

  const std::vector<double> old = mean_;
  std::fill(mean_.begin(), mean_.end(), 0.0);
  for (int i = 0; i < mu_; ++i)
    for (int d = 0; d < n_; ++d) mean_[d] += weights_[i] * raw_[order[i]][d];
  std::vector<double> yw(n_);
  for (int d = 0; d < n_; ++d) yw[d] = (mean_[d] - old[d]) / sigma_;
  // C^{-1/2} yw = B D^{-1} B^T yw
  std::vector<double> bt(n_, 0.0), inv_sqrt(n_, 0.0);
  for (int j = 0; j < n_; ++j)
    for (int i = 0; i < n_; ++i) bt[j] += basis_[static_cast<size_t>(i * n_ + j)] * yw[i];
  for (int i = 0; i < n_; ++i)
    for (int j = 0; j < n_; ++j) inv_sqrt[i] += basis_[static_cast<size_t>(i * n_ + j)] * bt[j] / scale_[j];
  const double cs_norm = std::sqrt(cs_ * (2 - cs_) * mueff_);
  double ps_len = 0;
  for (int d = 0; d < n_; ++d) {
    ps_[d] = (1 - cs_) * ps_[d] + cs_norm * inv_sqrt[d];
    ps_len += ps_[d] * ps_[d];
  }
  ps_len = std::sqrt(ps_len);
  ++generation_;
  const bool hsig = ps_len / std::sqrt(1 - std::pow(1 - cs_, 2.0 * static_cast<double>(generation_))) <
                    (1.4 + 2 / (n_ + 1.0)) * chi_n_;
  const double cc_norm = std::sqrt(cc_ * (2 - cc_) * mueff_);
  for (int d = 0; d < n_; ++d) pc_[d] = (1 - cc_) * pc_[d] + (hsig ? cc_norm * yw[d] : 0.0);
  const double keep = 1 - c1_ - cmu_ + (hsig ? 0.0 : c1_ * cc_ * (2 - cc_));
  for (int i = 0; i < n_; ++i)
    for (int j = 0; j < n_; ++j) {
      double rank_mu = 0;
      for (int k = 0; k < mu_; ++k) {
        const auto& x = raw_[order[k]];
        rank_mu += weights_[k] * ((x[i] - old[i]) / sigma_) * ((x[j] - old[j]) / sigma_);
      }
      double& c = cov_[static_cast<size_t>(i * n_ + j)];
      c = keep * c + c1_ * pc_[i] * pc_[j] + cmu_ * rank_mu;
    }
  sigma_ *= std::exp((cs_ / damps_) * (ps_len / chi_n_ - 1));
  sigma_ = std::min(sigma_, 1.0);  // the whole box: no step needs to be larger
  decompose();
}

}  // namespace anvil::merge
