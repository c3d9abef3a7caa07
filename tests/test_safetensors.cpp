// safetensors reader/writer: byte-identical round trips of files written by the reference
// implementation (Hugging Face safetensors), and every malformed-header case rejected with a
// message that names the file and the problem.
#include <gtest/gtest.h>

#include <cstring>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "test_support.h"
#include "util/error.h"

using namespace anvil;
using anvil::test::TempDir;

namespace {

std::string make_file(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + std::string(data_bytes, '\x01');
}

// Expects opening `bytes` as a safetensors file to fail with a message containing `needle`
// (and the file's path).
void expect_rejected(const std::string& bytes, const std::string& needle) {
  TempDir dir;
  auto path = dir / "bad.safetensors";
  test::write_bytes(path, bytes);
  try {
    io::SafetensorsFile f(path);
    FAIL() << "accepted a bad file; expected: " << needle;
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "error must be one line: " << msg;
  }
}

void round_trip(const std::filesystem::path& original) {
  io::SafetensorsFile in(original);
  std::vector<io::TensorSpec> specs;
  for (const auto& t : in.tensors()) specs.push_back(t.spec);
  TempDir dir;
  auto copy = dir / "copy.safetensors";
  io::SafetensorsWriter writer(copy, specs, in.metadata());
  // Write in reverse order: the writer places bytes by offset, not by call order.
  for (auto it = in.tensors().rbegin(); it != in.tensors().rend(); ++it) writer.write(it->name(), it->bytes);
  writer.commit();
  EXPECT_EQ(test::read_bytes(original), test::read_bytes(copy)) << original;
}

}  // namespace

TEST(Safetensors, ReadsShardedBaseModel) {
  io::Checkpoint ckpt(test::model_dir("base"));
  EXPECT_EQ(ckpt.shards().size(), 2u);
  EXPECT_EQ(ckpt.names().size(), 75u);
  const auto& emb = ckpt.get("model.embed_tokens.weight");
  EXPECT_EQ(emb.spec.dtype, io::DType::BF16);
  EXPECT_EQ(emb.spec.shape, (std::vector<int64_t>{4096, 256}));
  int64_t params = 0;
  for (const auto& n : ckpt.names()) params += ckpt.get(n).spec.numel();
  EXPECT_EQ(params, 8392960);  // total_parameters in the index written by transformers
  EXPECT_EQ(ckpt.total_bytes(), 16785920u);
}

TEST(Safetensors, RoundTripIsByteIdentical) {
  round_trip(test::model_dir("base") / "model-00001-of-00002.safetensors");
  round_trip(test::model_dir("base") / "model-00002-of-00002.safetensors");
  round_trip(test::model_dir("tiny-qwen2") / "model.safetensors");
  round_trip(test::model_dir("lora-random") / "adapter_model.safetensors");
  round_trip(test::shared_dir() / "refs" / "base_logits_val.safetensors");
}

TEST(Safetensors, HeaderIsPaddedAndCarriesMetadata) {
  std::string h = io::serialize_header({{"a", io::DType::F16, {3}}}, {{"format", "pt"}});
  EXPECT_EQ(h.size() % 8, 0u);
  EXPECT_EQ(h.rfind("{\"__metadata__\":{\"format\":\"pt\"},\"a\":", 0), 0u) << h;
}

TEST(Safetensors, RejectsTruncatedFile) { expect_rejected(std::string(5, '\0'), "truncated"); }

TEST(Safetensors, RejectsHeaderLengthPastEnd) {
  std::string f = make_file("{}", 0);
  uint64_t n = 4096;
  std::memcpy(f.data(), &n, 8);
  expect_rejected(f, "runs past the end of the file");
}

TEST(Safetensors, RejectsHugeHeaderLengthWithoutAllocating) {
  std::string f = make_file("{}", 0);
  uint64_t n = ~0ull;
  std::memcpy(f.data(), &n, 8);
  expect_rejected(f, "exceeds the 100 MB limit");
}

TEST(Safetensors, RejectsBrokenJson) {
  expect_rejected(make_file("{\"a\": {\"dtype\": \"F32\",", 0), "not valid JSON");
}

TEST(Safetensors, RejectsOverlappingOffsets) {
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                            12),
                  "overlap");
}

TEST(Safetensors, RejectsGapBetweenTensors) {
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                            R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                            12),
                  "gap of 4 bytes");
}

TEST(Safetensors, RejectsDtypeSizeMismatch) {
  expect_rejected(make_file(R"({"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}})", 8),
                  "shape needs 6 bytes but data_offsets span 8");
}

TEST(Safetensors, RejectsOffsetsPastDataArea) {
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8),
                  "past the data area");
}

TEST(Safetensors, RejectsUnknownDtypeAndNegativeShape) {
  expect_rejected(make_file(R"({"a":{"dtype":"Q9","shape":[1],"data_offsets":[0,1]}})", 1), "unknown dtype");
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4), "negative");
}

TEST(Safetensors, RejectsShapeOverflow) {
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4),
                  "too large");
}

TEST(Safetensors, RejectsTrailingBytes) {
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8), "trailing bytes");
}

TEST(Checkpoint, MissingShardIsNamed) {
  TempDir dir;
  auto base = test::model_dir("base");
  std::filesystem::copy_file(base / "model.safetensors.index.json", dir / "model.safetensors.index.json");
  std::filesystem::copy_file(base / "model-00001-of-00002.safetensors", dir / "model-00001-of-00002.safetensors");
  try {
    io::Checkpoint ckpt(dir.path());
    FAIL() << "accepted a checkpoint with a missing shard";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("shard 'model-00002-of-00002.safetensors'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("is missing"), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, BrokenIndexJson) {
  TempDir dir;
  test::write_bytes(dir / "model.safetensors.index.json", "{\"weight_map\": {");
  EXPECT_THROW(io::Checkpoint ckpt(dir.path()), Error);
}

TEST(Writer, UncommittedOutputLeavesNothing) {
  TempDir dir;
  {
    io::SafetensorsWriter writer(dir / "out.safetensors", {{"a", io::DType::F32, {2}}});
    std::vector<uint8_t> bytes(8, 0);
    writer.write("a", bytes);
    // destroyed without commit: as if interrupted
  }
  EXPECT_EQ(test::count_entries(dir.path()), 0u);
}

TEST(Writer, CommitRefusesMissingTensorAndWrongSize) {
  TempDir dir;
  io::SafetensorsWriter writer(dir / "out.safetensors", {{"a", io::DType::F32, {2}}, {"b", io::DType::F16, {1}}});
  std::vector<uint8_t> wrong(3, 0);
  EXPECT_THROW(writer.write("a", wrong), Error);
  EXPECT_THROW(writer.commit(), Error);
}

TEST(Writer, ShardsAtSizeLimitWithIndex) {
  io::Checkpoint base(test::model_dir("base"));
  std::vector<io::TensorSpec> specs;
  for (const auto& n : base.names()) specs.push_back(base.get(n).spec);
  TempDir dir;
  io::ShardedWriter writer(dir.path(), specs, 6'000'000);
  for (const auto& n : base.names()) writer.write(n, base.get(n).bytes);
  writer.commit();
  EXPECT_GE(writer.shard_count(), 3u);
  EXPECT_TRUE(std::filesystem::exists(dir / "model.safetensors.index.json"));
  io::Checkpoint back(dir.path());
  ASSERT_EQ(back.names().size(), base.names().size());
  for (const auto& n : base.names()) {
    const auto& a = base.get(n);
    const auto& b = back.get(n);
    EXPECT_EQ(a.spec.shape, b.spec.shape);
    EXPECT_EQ(0, std::memcmp(a.bytes.data(), b.bytes.data(), a.bytes.size())) << n;
    EXPECT_LE(std::filesystem::file_size(b.file), 6'000'000u + 4096) << "shard over the limit";
  }
}

TEST(ByteSize, Parses) {
  EXPECT_EQ(io::parse_byte_size("5GB"), 5'000'000'000u);
  EXPECT_EQ(io::parse_byte_size("500MB"), 500'000'000u);
  EXPECT_EQ(io::parse_byte_size("2GiB"), 2147483648u);
  EXPECT_EQ(io::parse_byte_size("123"), 123u);
  EXPECT_THROW(io::parse_byte_size("5XB"), Error);
}

TEST(DType, HalfConversionsMatchIeee) {
  EXPECT_EQ(io::float_to_f16(1.0f), 0x3C00);
  EXPECT_EQ(io::float_to_f16(65504.0f), 0x7BFF);
  EXPECT_EQ(io::float_to_f16(1e6f), 0x7C00);
  EXPECT_EQ(io::float_to_f16(5.960464477539063e-08f), 0x0001);  // smallest subnormal
  EXPECT_EQ(io::float_to_f16(-2.0f), 0xC000);
  EXPECT_FLOAT_EQ(io::f16_to_float(0x3555), 0.333251953125f);
  EXPECT_EQ(io::float_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(io::float_to_bf16(1.00390625f), 0x3F80);  // tie rounds to even
  EXPECT_EQ(io::float_to_bf16(1.01171875f), 0x3F82);  // tie rounds to even (up)
  EXPECT_FLOAT_EQ(io::bf16_to_float(0x4049), 3.140625f);
}
