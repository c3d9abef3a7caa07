// GGUF reader/writer against files written by llama.cpp itself (refs/gguf), and hostile input:
// bad magic, truncation, offsets past the end, absurd counts and string lengths, unknown types.
#include <gtest/gtest.h>

#include <cstring>

#include "io/gguf.h"
#include "test_support.h"
#include "util/error.h"

using namespace anvil;
using anvil::test::TempDir;

namespace {

std::filesystem::path ref(const std::string& type) { return test::shared_dir() / "refs" / "gguf" / ("base-" + type + ".gguf"); }

std::string expect_rejected(const std::string& bytes, const std::string& needle) {
  TempDir dir;
  auto path = dir / "bad.gguf";
  test::write_bytes(path, bytes);
  try {
    io::GgufFile f(path);
    ADD_FAILURE() << "accepted a bad file; expected: " << needle;
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
    return msg;
  }
  return "";
}

template <typename T>
void put(std::string& s, T v) { s.append(reinterpret_cast<const char*>(&v), sizeof v); }
void put_str(std::string& s, const std::string& v) {
  put<uint64_t>(s, v.size());
  s += v;
}

std::string header(uint64_t tensors, uint64_t kvs) {
  std::string s = "GGUF";
  put<uint32_t>(s, 3);
  put<uint64_t>(s, tensors);
  put<uint64_t>(s, kvs);
  return s;
}

}  // namespace

TEST(Gguf, ReadsLlamaCppFiles) {
  for (const char* type : {"F16", "Q8_0", "Q4_0", "Q4_K_M", "Q6_K"}) {
    SCOPED_TRACE(type);
    io::GgufFile f(ref(type));
    EXPECT_EQ(f.version(), 3u);
    ASSERT_NE(f.find("general.architecture"), nullptr);
    EXPECT_EQ(*f.find("general.architecture")->as_string(), "llama");
    EXPECT_EQ(f.find("llama.block_count")->as_int(), 8);
    EXPECT_EQ(f.find("llama.embedding_length")->as_int(), 256);
    EXPECT_EQ(f.find("tokenizer.ggml.tokens")->as_array()->values.size(), 4096u);
    EXPECT_EQ(f.tensors().size(), 75u);
    const auto* out = f.find_tensor("output.weight");
    ASSERT_NE(out, nullptr);
    EXPECT_EQ(out->dims, (std::vector<uint64_t>{256, 4096}));
  }
  // What llama-quantize chose for base (issue: output.weight Q6_K; attn_v/ffn_down bumps).
  io::GgufFile q4km(ref("Q4_K_M"));
  EXPECT_EQ(q4km.find_tensor("output.weight")->type, 14u);       // Q6_K
  EXPECT_EQ(q4km.find_tensor("blk.0.attn_v.weight")->type, 14u);  // Q6_K in layer 0
  EXPECT_EQ(q4km.find_tensor("blk.1.attn_v.weight")->type, 12u);  // Q4_K elsewhere
  EXPECT_EQ(q4km.find_tensor("blk.1.attn_q.weight")->type, 12u);
}

TEST(Gguf, RewriteOfLlamaCppFileIsByteIdentical) {
  for (const char* type : {"F16", "Q4_K_M"}) {
    io::GgufFile in(ref(type));
    std::vector<io::GgufTensorInfo> infos;
    for (const auto& t : in.tensors()) infos.push_back({t.name, t.dims, t.type, 0, 0, {}});
    TempDir dir;
    io::GgufWriter w(dir / "copy.gguf", in.metadata(), infos);
    for (const auto& t : in.tensors()) w.write(t.name, t.data);
    w.commit();
    EXPECT_EQ(test::read_bytes(ref(type)), test::read_bytes(dir / "copy.gguf")) << type;
  }
}

TEST(Gguf, RejectsBadMagicAndVersion) {
  expect_rejected("GGML" + std::string(20, '\0'), "bad magic");
  std::string s = "GGUF";
  put<uint32_t>(s, 7);
  s += std::string(16, '\0');
  expect_rejected(s, "unsupported GGUF version 7");
}

TEST(Gguf, RejectsTruncatedFile) {
  auto bytes = test::read_bytes(ref("Q8_0"));
  expect_rejected(bytes.substr(0, 20), "truncated");
  expect_rejected(bytes.substr(0, bytes.size() - 1000), "runs past the end of the file");
}

TEST(Gguf, RejectsAbsurdCounts) {
  expect_rejected(header(1ull << 60, 0), "tensor count");
  expect_rejected(header(0, 1ull << 62), "metadata count");
  std::string s = header(0, 1);
  put_str(s, "general.tokens");
  put<uint32_t>(s, 9);   // array
  put<uint32_t>(s, 8);   // of strings
  put<uint64_t>(s, 1ull << 40);
  expect_rejected(s, "array count");
}

TEST(Gguf, RejectsHugeStringLength) {
  std::string s = header(0, 1);
  put<uint64_t>(s, 1ull << 50);  // key length
  s += std::string(64, 'a');
  expect_rejected(s, "runs past the end of the file");
}

TEST(Gguf, RejectsBadTensorInfos) {
  auto tensor = [](uint32_t n_dims, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
    std::string s = header(1, 0);
    put_str(s, "blk.0.attn_q.weight");
    put<uint32_t>(s, n_dims);
    for (auto d : dims) put<uint64_t>(s, d);
    put<uint32_t>(s, type);
    put<uint64_t>(s, offset);
    s.append(64 + 4096, '\0');
    return s;
  };
  expect_rejected(tensor(5, {1, 1, 1, 1, 1}, 0, 0), "5 dimensions");
  expect_rejected(tensor(2, {32, 2}, 99, 0), "unknown ggml type 99");
  expect_rejected(tensor(2, {1ull << 40, 1ull << 40}, 0, 0), "overflow");
  expect_rejected(tensor(2, {33, 1}, 8, 0), "not a multiple of the Q8_0 block");
  expect_rejected(tensor(2, {32, 1}, 0, 1ull << 40), "runs past the end");
  expect_rejected(tensor(2, {32, 1}, 0, 3), "not aligned");
  std::string long_name = header(1, 0);
  put_str(long_name, std::string(100, 'x'));
  long_name.append(64, '\0');
  expect_rejected(long_name, "longer than");
}

TEST(Gguf, WriterRefusesIncompleteOutput) {
  TempDir dir;
  {
    io::GgufWriter w(dir / "x.gguf", {{"general.architecture", io::GgufValue::str("llama")}},
                     {{"a", {32}, 0, 0, 0, {}}});
    EXPECT_THROW(w.commit(), Error);
  }
  EXPECT_EQ(test::count_entries(dir.path()), 0u);
}

// Tensors are written in row chunks: parts past the tensor are refused, and a tensor missing a
// part leaves no output.
TEST(Gguf, WriterChecksTensorParts) {
  TempDir dir;
  const std::vector<uint8_t> half(64, 7);  // F32 [32]: 128 bytes
  {
    io::GgufWriter w(dir / "x.gguf", {{"general.architecture", io::GgufValue::str("llama")}},
                     {{"a", {32}, 0, 0, 0, {}}});
    w.write_part("a", 0, half);
    EXPECT_THROW(w.write_part("a", 100, half), Error);
    EXPECT_THROW(w.commit(), Error);
  }
  EXPECT_EQ(test::count_entries(dir.path()), 0u);
  {
    io::GgufWriter w(dir / "x.gguf", {{"general.architecture", io::GgufValue::str("llama")}},
                     {{"a", {32}, 0, 0, 0, {}}});
    w.write_part("a", 64, half);
    w.write_part("a", 0, half);
    w.commit();
  }
  io::GgufFile f(dir / "x.gguf");
  ASSERT_EQ(f.tensors().size(), 1u);
  EXPECT_EQ(std::vector<uint8_t>(f.tensors()[0].data.begin(), f.tensors()[0].data.end()), std::vector<uint8_t>(128, 7));
}

