// llama.cpp's importance-matrix files, against the layouts llama-imatrix writes and llama-quantize
// reads (tools/imatrix/imatrix.cpp save_imatrix / save_imatrix_legacy, common/imatrix-loader.cpp),
// written out here byte by byte; and the importance-weighted encoders against ggml's reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "io/gguf.h"
#include "io/safetensors.h"
#include "quant/imatrix_file.h"
#include "quant/quant_types.h"
#include "test_support.h"
#include "util/error.h"

using namespace anvil;

namespace {

// Little-endian int32 / float32 / name as save_imatrix_legacy writes them.
struct Dat {
  std::string bytes;
  Dat& i32(int32_t v) { return append(&v, 4); }
  Dat& f32(float v) { return append(&v, 4); }
  Dat& str(const std::string& s) {
    i32(static_cast<int32_t>(s.size()));
    bytes += s;
    return *this;
  }
  Dat& append(const void* p, size_t n) {
    bytes.append(static_cast<const char*>(p), n);
    return *this;
  }
};

}  // namespace

// A legacy file: entries of (name, ncall, values = mean * ncall), then the chunk count and the
// dataset. llama-quantize divides the values by ncall.
TEST(ImatrixFile, LegacyDatReadsAsLlamaQuantizeReadsIt) {
  test::TempDir dir;
  Dat d;
  d.i32(2);
  d.str("blk.0.attn_q.weight").i32(3).i32(4).f32(3).f32(6).f32(0.75f).f32(0);
  d.str("blk.0.ffn_down_exps.weight").i32(2).i32(4).f32(2).f32(4).f32(6).f32(8);  // 2 experts of 2 columns
  d.i32(7).str("calib.txt");
  test::write_bytes(dir / "m.dat", d.bytes);
  const auto m = quant::read_imatrix(dir / "m.dat");
  EXPECT_TRUE(m.legacy);
  EXPECT_EQ(m.chunk_count, 7);
  ASSERT_EQ(m.datasets, std::vector<std::string>{"calib.txt"});
  const auto imp = m.importance();
  ASSERT_EQ(imp.size(), 2u);
  EXPECT_EQ(imp.at("blk.0.attn_q.weight"), (std::vector<float>{1, 2, 0.25f, 0}));
  EXPECT_EQ(imp.at("blk.0.ffn_down_exps.weight"), (std::vector<float>{1, 2, 3, 4}));
  // The trailer is optional (older files end after the entries).
  Dat bare;
  bare.i32(1).str("output.weight").i32(0).i32(1).f32(5);
  test::write_bytes(dir / "bare.dat", bare.bytes);
  const auto b = quant::read_imatrix(dir / "bare.dat");
  EXPECT_EQ(b.chunk_count, 0);
  EXPECT_TRUE(b.datasets.empty());
  EXPECT_EQ(b.importance().at("output.weight"), std::vector<float>{5});  // ncall 0: the values as they are
}

// Writing the legacy layout: entries in name order, ncall = ceil(max count / chunk size), values
// (sum / count) * ncall, an expert that saw no token stored as 1 * ncall, the last dataset last.
TEST(ImatrixFile, LegacyDatIsWrittenAsLlamaImatrixWritesIt) {
  test::TempDir dir;
  quant::Imatrix m;
  m.chunk_size = 4;
  m.chunk_count = 3;
  m.datasets = {"a.txt", "b.txt"};
  m.entries["blk.1.ffn_up.weight"] = {{8, 12}, {10}};
  m.entries["blk.0.ffn_gate_exps.weight"] = {{6, 3, 9, 9}, {3, 0}};  // expert 1 unrouted
  m.entries["blk.0.unused.weight"] = {{0, 0}, {0}};                   // no tokens at all: left out
  quant::write_imatrix_dat(dir / "m.dat", m);
  Dat want;
  want.i32(2);
  want.str("blk.0.ffn_gate_exps.weight").i32(1).i32(4).f32(6.f / 3).f32(3.f / 3).f32(1).f32(1);
  want.str("blk.1.ffn_up.weight").i32(3).i32(2).f32(8.f / 10 * 3).f32(12.f / 10 * 3);
  want.i32(3).str("b.txt");
  EXPECT_EQ(test::read_bytes(dir / "m.dat"), want.bytes);
}

// The GGUF layout: general.type, imatrix.datasets (strings), imatrix.chunk_count and chunk_size
// (u32), then per weight in name order `<name>.in_sum2` (F32 [cols] or [cols, experts]) and
// `<name>.counts` (F32 [1] or [1, experts]): raw sums and token counts. Read back, a matrix with
// no tokens weighs 1 (llama-quantize's rule).
TEST(ImatrixFile, GgufLayoutIsLlamaImatrixs) {
  test::TempDir dir;
  quant::Imatrix m;
  m.chunk_size = 512;
  m.chunk_count = 9;
  m.datasets = {"calib.txt"};
  m.entries["blk.0.attn_q.weight"] = {{2, 4, 6}, {2}};
  m.entries["blk.0.ffn_down_exps.weight"] = {{3, 6, 0, 0}, {3, 0}};
  quant::write_imatrix_gguf(dir / "m.gguf", m);
  io::GgufFile f(dir / "m.gguf");
  EXPECT_EQ(*f.find("general.type")->as_string(), "imatrix");
  EXPECT_EQ(f.find("imatrix.chunk_count")->type, io::GgufType::UINT32);
  EXPECT_EQ(*f.find("imatrix.chunk_count")->as_int(), 9);
  EXPECT_EQ(f.find("imatrix.chunk_size")->type, io::GgufType::UINT32);
  EXPECT_EQ(*f.find("imatrix.chunk_size")->as_int(), 512);
  const auto* ds = f.find("imatrix.datasets")->as_array();
  ASSERT_TRUE(ds && ds->type == io::GgufType::STRING && ds->values.size() == 1);
  EXPECT_EQ(*ds->values[0].as_string(), "calib.txt");
  ASSERT_EQ(f.tensors().size(), 4u);
  const std::vector<std::pair<std::string, std::vector<uint64_t>>> want{
      {"blk.0.attn_q.weight.in_sum2", {3}},
      {"blk.0.attn_q.weight.counts", {1}},
      {"blk.0.ffn_down_exps.weight.in_sum2", {2, 2}},
      {"blk.0.ffn_down_exps.weight.counts", {1, 2}}};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(f.tensors()[i].name, want[i].first);
    EXPECT_EQ(f.tensors()[i].dims, want[i].second) << want[i].first;
    EXPECT_EQ(f.tensors()[i].type, 0u);
  }
  std::vector<float> counts(2);
  std::memcpy(counts.data(), f.find_tensor("blk.0.ffn_down_exps.weight.counts")->data.data(), 8);
  EXPECT_EQ(counts, (std::vector<float>{3, 0}));
  const auto back = quant::read_imatrix(dir / "m.gguf");
  EXPECT_FALSE(back.legacy);
  EXPECT_EQ(back.chunk_count, 9);
  const auto imp = back.importance();
  EXPECT_EQ(imp.at("blk.0.attn_q.weight"), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(imp.at("blk.0.ffn_down_exps.weight"), (std::vector<float>{1, 2, 1, 1}));
}

// Strangers' files: every malformed one fails naming the file (and the entry where there is one).
TEST(ImatrixFile, MalformedFilesFailNamingTheFileAndEntry) {
  test::TempDir dir;
  auto fails_with = [&](const std::string& bytes, const std::string& fragment) {
    test::write_bytes(dir / "bad.dat", bytes);
    try {
      quant::read_imatrix(dir / "bad.dat");
      ADD_FAILURE() << "accepted: " << fragment;
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("bad.dat"), std::string::npos) << what;
      EXPECT_NE(what.find(fragment), std::string::npos) << what;
    }
  };
  fails_with("", "entry count");
  fails_with(Dat().i32(1 << 30).bytes, "entry count");
  fails_with(Dat().i32(1).str("w").i32(1).i32(1 << 30).f32(0).bytes + std::string(16, '\0'), "'w'");
  fails_with(Dat().i32(1).str("w").i32(1).i32(2).f32(1).f32(NAN).bytes, "'w'");
  fails_with(Dat().i32(1).str("w").i32(1).i32(1).f32(-2).bytes, "'w'");
  fails_with(Dat().i32(2).str("w").i32(1).i32(1).f32(1).str("w").i32(1).i32(1).f32(1).bytes, "twice");
  EXPECT_THROW(quant::read_imatrix(dir / "absent.dat"), Error);
}

// ggml's Q6_K reference encoder weights each element's error by x^2 (make_qx_quants, rmse_type 1);
// its importance-weighted encoder by the importance itself. So a row encoded with its own squares
// as the importance must give ggml's reference bytes: every row of ggml's vectors.
TEST(ImportanceWeighted, Q6KWithSquaresAsImportanceIsGgmlsReference) {
  io::SafetensorsFile v{test::shared_dir() / "refs" / "quant" / "ggml_vectors.safetensors"};
  const auto* input = reinterpret_cast<const float*>(v.find("input")->bytes.data());
  const auto* expected = v.find("q6_K.quantized");
  const quant::QuantType* q6 = quant::find_quant_type("Q6_K");
  const int64_t n = 512, rows = expected->spec.shape[0], row_bytes = q6->row_bytes(n);
  std::vector<uint8_t> got(static_cast<size_t>(row_bytes));
  std::vector<float> squares(n);
  int bad = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = input + r * n;
    for (int64_t j = 0; j < n; ++j) squares[j] = x[j] * x[j];
    q6->encode_weighted(x, got.data(), n, squares.data());
    bad += std::memcmp(got.data(), expected->bytes.data() + r * row_bytes, got.size()) != 0;
  }
  EXPECT_EQ(bad, 0) << "rows whose bytes differ from ggml's reference Q6_K";
}

// Every quantized type anvil writes has an importance-weighted encoder but Q8_0, which ggml's
// quantize_q8_0 does not weight either.
TEST(ImportanceWeighted, EveryQuantizedTypeButQ8_0TakesAnImportanceMatrix) {
  for (const auto& t : quant::quant_types()) {
    if (t.block_elements == 1) continue;
    EXPECT_EQ(t.encode_weighted != nullptr, t.name != "Q8_0") << t.name;
  }
}
