#include "model/stored_linear.h"

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <vector>

#include "util/blas_info.h"
#include "util/error.h"

namespace anvil::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Rows of W per parallel task: enough work to amortise a task, small enough that the rows a task
// reads for several activation rows stay in cache.
constexpr int64_t kRowsPerTask = 16;

at::Tensor flat_fp32(const at::Tensor& x, int64_t width, const char* what) {
  if (x.scalar_type() != at::kFloat || !x.device().is_cpu())
    fail("stored weights", std::string(what) + " must be fp32 on the CPU");
  if (x.size(-1) != width) fail("stored weights", std::string(what) + " has the wrong width");
  return x.reshape({-1, width}).contiguous();
}

std::vector<int64_t> with_last(const at::Tensor& x, int64_t last) {
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = last;
  return shape;
}

float* scratch(int64_t floats) {
  thread_local std::vector<float> buffer;
  if (static_cast<int64_t>(buffer.size()) < floats) buffer.resize(static_cast<size_t>(floats));
  return buffer.data();
}

int64_t tile_rows(const WeightMatrix& w) {
  const int64_t fit = kTileBytes / static_cast<int64_t>(sizeof(float)) / w.cols();
  return std::min(w.rows(), std::max<int64_t>(kRowsPerTask, fit / kRowsPerTask * kRowsPerTask));
}

// A tile of rows [r0, r0 + n) dequantized (in parallel) into this thread's scratch.
at::Tensor dequantized_tile(const WeightMatrix& w, int64_t r0, int64_t n) {
  float* buf = scratch(n * w.cols());
  at::parallel_for(0, n, kRowsPerTask, [&](int64_t b, int64_t e) {
    w.dequantize_rows(r0 + b, e - b, buf + b * w.cols());
  });
  return at::from_blob(buf, {n, w.cols()}, at::TensorOptions().dtype(at::kFloat));
}

at::Tensor product(const WeightMatrix& w, const at::Tensor& x) {  // x [M, cols] contiguous
  const int64_t M = x.size(0), N = w.rows(), K = w.cols();
  if (M <= kDotRowsMax) {
    auto y = at::empty({M, N}, x.options());
    const float* xp = x.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    at::parallel_for(0, N, kRowsPerTask, [&](int64_t b, int64_t e) {
      if (M == 1) return w.dot_rows(b, e - b, xp, yp + b);  // one call: per-call set-up once
      for (int64_t r = b; r < e; r += kRowsPerTask) {
        const int64_t n = std::min(kRowsPerTask, e - r);
        for (int64_t m = 0; m < M; ++m) w.dot_rows(r, n, xp + m * K, yp + m * N + r);
      }
    });
    return y;
  }
  // One tile of W's rows at a time fills a block of y's columns: a row-major matrix with leading
  // dimension N, which the GEMM writes in place (no copy). With several threads, each thread
  // dequantizes and multiplies whole tiles with a single-threaded GEMM: alternating OpenMP
  // dequantization with OpenBLAS's own threads left each pool spinning while the other ran (on
  // two cores, 40% of a prompt's time).
  auto y = at::empty({M, N}, x.options());
  const int threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  int64_t T = tile_rows(w);
  if (threads > 1) T = std::min(T, (N + threads * kRowsPerTask - 1) / (threads * kRowsPerTask) * kRowsPerTask);
  const int64_t tiles = (N + T - 1) / T;
  auto run_tile = [&](int64_t t) {
    const int64_t r0 = t * T, n = std::min(T, N - r0);
    auto out = y.narrow(1, r0, n);
    at::mm_out(out, x, dequantized_tile(w, r0, n).t());
  };
  if (threads > 1) {
    SingleThreadedBlas blas;
    const at::ThreadLocalState caller;  // inference/grad mode: thread-local, and the workers run ATen ops
    at::parallel_for(0, tiles, 1, [&](int64_t b, int64_t e) {
      at::ThreadLocalStateGuard same_state(caller);
      for (int64_t t = b; t < e; ++t) run_tile(t);
    });
  } else {
    for (int64_t t = 0; t < tiles; ++t) run_tile(t);
  }
  return y;
}

struct StoredLinearFunction : public torch::autograd::Function<StoredLinearFunction> {
  struct Holder : torch::CustomClassHolder {
    explicit Holder(WeightMatrixPtr m) : matrix(std::move(m)) {}
    WeightMatrixPtr matrix;
  };
  static at::Tensor forward(AutogradContext* ctx, at::Tensor x, WeightMatrixPtr w) {
    ctx->saved_data["w"] = c10::IValue::make_capsule(c10::make_intrusive<Holder>(w));
    at::NoGradGuard no_grad;
    return product(*w, x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    auto holder = c10::static_intrusive_pointer_cast<Holder>(ctx->saved_data["w"].toCapsule());
    return {stored_linear_transposed(*holder->matrix, grad[0]), at::Tensor()};
  }
};

}  // namespace

at::Tensor stored_linear(const WeightMatrixPtr& w, const at::Tensor& x) {
  const auto x2 = flat_fp32(x, w->cols(), "the input of a stored linear layer");
  at::Tensor y = at::GradMode::is_enabled() && x.requires_grad() ? StoredLinearFunction::apply(x2, w)
                                                                 : product(*w, x2);
  return y.view(with_last(x, w->rows()));
}

at::Tensor stored_linear_transposed(const WeightMatrix& w, const at::Tensor& g) {
  const auto g2 = flat_fp32(g, w.rows(), "the gradient of a stored linear layer");
  const int64_t N = w.rows(), T = tile_rows(w);
  auto gx = at::zeros({g2.size(0), w.cols()}, g2.options());
  for (int64_t r0 = 0; r0 < N; r0 += T) {
    const int64_t n = std::min(T, N - r0);
    gx.addmm_(g2.narrow(1, r0, n), dequantized_tile(w, r0, n));
  }
  return gx.view(with_last(g, w.cols()));
}

at::Tensor stored_embedding(const WeightMatrix& w, const at::Tensor& ids) {
  auto flat = ids.reshape({-1}).to(at::kLong).contiguous();
  const int64_t n = flat.numel(), K = w.cols();
  auto out = at::empty({n, K}, at::TensorOptions().dtype(at::kFloat));
  const int64_t* id = flat.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    if (id[i] < 0 || id[i] >= w.rows()) fail("token ids", "id " + std::to_string(id[i]) + " is outside the embedding");
  float* op = out.data_ptr<float>();
  at::parallel_for(0, n, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) w.dequantize_rows(id[i], 1, op + i * K);
  });
  std::vector<int64_t> shape(ids.sizes().begin(), ids.sizes().end());
  shape.push_back(K);
  return out.view(shape);
}

at::Tensor dequantize_matrix(const WeightMatrix& w) {
  auto out = at::empty({w.rows(), w.cols()}, at::TensorOptions().dtype(at::kFloat));
  float* op = out.data_ptr<float>();
  at::parallel_for(0, w.rows(), kRowsPerTask, [&](int64_t b, int64_t e) {
    w.dequantize_rows(b, e - b, op + b * w.cols());
  });
  return out;
}

}  // namespace anvil::model
