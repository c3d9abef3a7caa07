// Computing from stored bytes (model/weight_matrix.h, model/stored_linear.h, kernel/row_dot.h)
// against "dequantize with ggml's reference decoder, then multiply in fp64".
//
// Tolerance: a product of K terms summed in fp32 in any order is within K * 2^-24 * sum_k |w_k x_k|
// of the exact sum (the textbook bound for recursive summation; the fused kernels only reorder the
// sum and factor the block scales out of it, which rounds within the same bound). The checks use
// that bound per output element, so they hold for every instruction set and blocking.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <random>

#include "io/gguf.h"
#include "kernel/row_dot.h"
#include "model/gguf_model.h"
#include "model/stored_linear.h"
#include "model/transformer.h"
#include "quant/int_export.h"
#include "quant/int_matrix.h"
#include "quant/quant_types.h"
#include "test_support.h"
#include "util/error.h"
#include "torch_support.h"

namespace anvil {
namespace {

struct Encoded {
  std::vector<uint8_t> bytes;
  std::shared_ptr<const model::WeightMatrix> matrix;
  at::Tensor dequantized;  // fp64 [rows, cols], ggml's reference decoder
};

Encoded encode(const quant::QuantType& type, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> values(static_cast<size_t>(rows * cols));
  for (auto& v : values) v = normal(rng);
  Encoded e;
  e.bytes.resize(static_cast<size_t>(rows * type.row_bytes(cols)));
  for (int64_t r = 0; r < rows; ++r)
    type.encode(values.data() + r * cols, e.bytes.data() + r * type.row_bytes(cols), cols);
  std::vector<float> decoded(values.size());
  type.decode(e.bytes.data(), decoded.data(), rows * cols);
  e.dequantized = at::from_blob(decoded.data(), {rows, cols}, at::kFloat).to(at::kDouble);
  e.matrix = model::stored_rows(type.ggml_type, e.bytes.data(), rows, cols, nullptr);
  return e;
}

at::Tensor random_input(int64_t m, int64_t cols, uint64_t seed) {
  at::manual_seed(seed);
  return at::randn({m, cols}, at::kFloat);
}

// |got - exact| <= K 2^-24 sum |w x| per element (plus a denormal-sized floor).
void expect_within_summation_bound(const at::Tensor& got, const at::Tensor& w, const at::Tensor& x,
                                   const std::string& what) {
  const auto xd = x.to(at::kDouble).reshape({-1, w.size(1)});
  const auto exact = at::matmul(xd, w.t());
  const auto bound = at::matmul(xd.abs(), w.abs().t()) * (static_cast<double>(w.size(1)) * std::ldexp(1.0, -24)) + 1e-30;
  const auto excess = ((got.to(at::kDouble).reshape(exact.sizes()) - exact).abs() - bound).max().item<double>();
  EXPECT_LE(excess, 0.0) << what;
}

TEST(RowDot, EveryTypeEqualsDequantizeThenDotOnEveryInstructionSet) {
  for (const auto& type : quant::quant_types())
   for (const int64_t cols : {int64_t{2 * 256}, int64_t{517}}) {  // two k-quant super-blocks; odd: the scalar tails
    if (cols % type.block_elements != 0) continue;
    const int64_t rows = 7;
    const Encoded e = encode(type, rows, cols, 11);
    const at::Tensor x = random_input(1, cols, 3);
    for (const char* isa : {"avx512", "avx2", "generic"}) {
      try {
        kernel::force_dot_isa(isa);
      } catch (const Error&) {
        continue;  // not on this CPU
      }
      // Decoding gives ggml's reference values exactly.
      std::vector<float> values(static_cast<size_t>(rows * cols));
      e.matrix->dequantize_rows(0, rows, values.data());
      EXPECT_EQ(test::max_abs_diff(at::from_blob(values.data(), {rows, cols}, at::kFloat), e.dequantized), 0.0)
          << type.name << " decoded on " << isa;
      std::vector<float> y(rows);
      e.matrix->dot_rows(0, rows, x.data_ptr<float>(), y.data());
      expect_within_summation_bound(at::from_blob(y.data(), {1, rows}, at::kFloat), e.dequantized, x,
                                    std::string(type.name) + " on " + isa + ", " + std::to_string(cols) + " columns");
    }
    kernel::force_dot_isa("");
  }
}

TEST(RowDot, FusedKernelsCoverTheTypesOfQ4KMQ8AndBf16Models) {
  for (const char* name : {"Q4_K", "Q6_K", "Q5_K", "Q8_0", "Q4_0", "BF16", "F16", "F32"})
    EXPECT_TRUE(kernel::has_fused_dot(quant::find_quant_type(name)->ggml_type)) << name;
}

TEST(StoredMatrix, RowOrderAndStackingReadRowsInPlace) {
  const auto& q4k = *quant::find_quant_type("Q4_K");
  const Encoded a = encode(q4k, 6, 256, 1), b = encode(*quant::find_quant_type("Q8_0"), 3, 256, 2);
  const std::vector<int32_t> order{5, 0, 4, 1, 3, 2};
  auto permuted = model::stored_rows(q4k.ggml_type, a.bytes.data(), 6, 256, nullptr, order);
  auto stacked = model::stacked_rows({permuted, b.matrix});
  EXPECT_EQ(stacked->rows(), 9);
  EXPECT_EQ(stacked->format(), "Q4_K+Q8_0");
  std::vector<float> rows(9 * 256);
  stacked->dequantize_rows(0, 9, rows.data());
  auto got = at::from_blob(rows.data(), {9, 256}, at::kFloat).to(at::kDouble);
  auto index = at::tensor(std::vector<int64_t>(order.begin(), order.end()));
  auto want = at::cat({a.dequantized.index_select(0, index), b.dequantized});
  EXPECT_EQ(test::max_abs_diff(got, want), 0.0);
  const at::Tensor x = random_input(1, 256, 4);
  std::vector<float> y(4);
  stacked->dot_rows(4, 4, x.data_ptr<float>(), y.data());  // across the parts' boundary
  expect_within_summation_bound(at::from_blob(y.data(), {1, 4}, at::kFloat), want.narrow(0, 4, 4), x, "stacked");
  EXPECT_THROW(model::stored_rows(q4k.ggml_type, a.bytes.data(), 6, 100, nullptr), Error);  // not whole blocks
  EXPECT_THROW(model::stored_rows(q4k.ggml_type, a.bytes.data(), 6, 256, nullptr, {0, 1, 2, 3, 4, 6}), Error);
  EXPECT_THROW(model::stored_rows(999, a.bytes.data(), 6, 256, nullptr), Error);
}

TEST(StoredLinear, DotAndTiledPathsAndTheInputGradientEqualTheDenseProduct) {
  // BF16 3000 x 1024: 12 MB in fp32, so the GEMM path runs in two tiles of kTileBytes.
  const auto& bf16 = *quant::find_quant_type("BF16");
  const Encoded e = encode(bf16, 3000, 1024, 5);
  ASSERT_GT(e.matrix->rows() * e.matrix->cols() * 4, model::kTileBytes);
  for (int64_t m : {int64_t{1}, model::kDotRowsMax, int64_t{9}}) {
    const at::Tensor x = random_input(m, 1024, 6 + m);
    const at::Tensor y = model::stored_linear(e.matrix, x.view({1, m, 1024}));
    EXPECT_EQ(y.sizes(), at::IntArrayRef({1, m, 3000}));
    expect_within_summation_bound(y, e.dequantized, x, "rows " + std::to_string(m));
  }
  // Gradient with respect to the input: g W, through autograd.
  const Encoded q = encode(*quant::find_quant_type("Q6_K"), 40, 512, 8);
  at::Tensor x = random_input(5, 512, 9).requires_grad_(true);
  at::Tensor g = random_input(5, 40, 10);
  auto y = model::stored_linear(q.matrix, x);
  auto gx = torch::autograd::grad({y}, {x}, {g})[0];
  const auto exact = at::matmul(g.to(at::kDouble), q.dequantized);
  EXPECT_LT(test::max_abs_diff(gx, exact), 1e-4 * exact.abs().max().item<double>());
  // Embedding rows are the dequantized rows, exactly.
  auto rows = model::stored_embedding(*q.matrix, at::tensor({3, 0, 39}, at::kLong).view({1, 3}));
  EXPECT_EQ(test::max_abs_diff(rows.view({3, 512}), q.dequantized.index_select(0, at::tensor({3, 0, 39}, at::kLong))), 0.0);
}

TEST(StoredWeights, ModelsComputeFromTheFilesBytesAndMatchTheExpandedModel) {
  // llama-quantize's Q4_K_M of base (Q4_K, Q6_K) and base itself (bf16 safetensors).
  const auto gguf_path = test::shared_dir() / "refs" / "gguf" / "base-Q4_K_M.gguf";
  model::LoadOptions expanded;
  expanded.keep_stored = false;
  auto ids = at::arange(1, 65, at::kLong).view({2, 32});
  for (int source = 0; source < 2; ++source) {
    auto load = [&](const model::LoadOptions& o) {
      return source == 0 ? model::load_gguf_transformer(io::GgufFile(gguf_path), o)
                         : model::Transformer::load(test::model_dir("base"), o);
    };
    auto stored = load({}), dense = load(expanded);
    for (const auto& f : stored->weight_formats()) EXPECT_EQ(f.format.find("expanded"), std::string::npos) << f.format;
    for (const auto& f : dense->weight_formats()) EXPECT_NE(f.format.find("expanded"), std::string::npos) << f.format;
    at::NoGradGuard no_grad;
    auto a = stored->forward(ids), b = dense->forward(ids);
    // Both are fp32 products of the same values in another summation order (K = 768 at most).
    EXPECT_LT(test::max_abs_diff(a, b), 1e-4 * b.abs().max().item<double>()) << source;
    // Decoding one token at a time (the fused dot kernels) gives the same logits.
    auto cache = stored->new_cache(1, 32);
    at::Tensor last;
    for (int64_t t = 0; t < 32; ++t) last = stored->forward(ids.narrow(0, 0, 1).narrow(1, t, 1), &cache);
    EXPECT_LT(test::max_abs_diff(last.view(-1), b[0][31]), 1e-4 * b.abs().max().item<double>()) << source;
  }
}

// INT4 and INT8 checkpoints in both layouts compute from their levels and scales (no fp32 copy of
// a projection) and give the logits of the same checkpoint expanded at load.
TEST(StoredWeights, IntegerCheckpointsComputeFromLevelsAndScales) {
  test::TempDir dir;
  model::LoadOptions expanded;
  expanded.keep_stored = false;
  auto ids = at::arange(1, 49, at::kLong).view({2, 24});
  for (int bits : {4, 8})
    for (auto format : {quant::IntFormat::CompressedTensors, quant::IntFormat::Gptq}) {
      quant::IntExportOptions opts;
      opts.spec = {bits, 128};
      opts.format = format;
      const auto out = dir / ("q" + std::to_string(bits) + (format == quant::IntFormat::Gptq ? "gptq" : "ct"));
      quant::export_int_safetensors(test::model_dir("base"), out, opts);
      auto stored = model::Transformer::load(out), dense = model::Transformer::load(out, expanded);
      int64_t int_matrices = 0;
      for (const auto& f : stored->weight_formats()) {
        EXPECT_EQ(f.format.find("expanded"), std::string::npos) << f.format;
        if (f.format == "INT" + std::to_string(bits) + " groups") int_matrices = f.matrices;
      }
      EXPECT_EQ(int_matrices, 8 * 4);  // per layer: q/k/v stacked, o, gate/up stacked, down
      at::NoGradGuard no_grad;
      auto a = stored->forward(ids), b = dense->forward(ids);
      EXPECT_LT(test::max_abs_diff(a, b), 1e-4 * b.abs().max().item<double>()) << out;
    }
}

}  // namespace
}  // namespace anvil
