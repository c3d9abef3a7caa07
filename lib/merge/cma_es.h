#pragma once
// CMA-ES (Hansen's (mu/mu_w, lambda) covariance matrix adaptation evolution strategy, as in his
// tutorial "The CMA Evolution Strategy", 2016: weighted recombination, cumulative step-size
// adaptation, rank-one and rank-mu covariance updates) over the unit box [0, 1]^n: candidates
// are evaluated at their nearest point in the box, plus a small penalty for the distance, which
// keeps the search from drifting outside. Seeded: the same seed asks the same questions.
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

namespace anvil::merge {

class CmaEs {
 public:
  // `start` in [0, 1]^n (the first mean), `sigma` the first step size in box units.
  CmaEs(std::vector<double> start, double sigma, uint64_t seed, int population = 0);

  int population() const { return lambda_; }
  // The next generation's candidates (each in the box: where the objective is evaluated).
  std::vector<std::vector<double>> ask();
  // Their objective values (lower is better), in ask()'s order.
  void tell(const std::vector<double>& values);
  const std::vector<double>& mean() const { return mean_; }
  double sigma() const { return sigma_; }

 private:
  int n_, lambda_, mu_;
  std::vector<double> weights_;
  double mueff_, cc_, cs_, c1_, cmu_, damps_, chi_n_;
  std::vector<double> mean_, pc_, ps_;
  std::vector<double> cov_;           // n x n, row-major
  std::vector<double> basis_, scale_;  // cov = B diag(scale^2) B^T
  double sigma_;
  int64_t generation_ = 0;
  std::mt19937_64 rng_;
  std::vector<std::vector<double>> raw_;  // the last ask()'s unclipped candidates
  void decompose();
};

}  // namespace anvil::merge
