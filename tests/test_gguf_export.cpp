// Writing GGUF: anvil's conversion and quantization of base must give, tensor by tensor, the
// bytes llama.cpp's converter and llama-quantize wrote (refs/gguf), with llama-quantize's
// per-tensor type choices; and a GGUF converts back to a working Hugging Face directory.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "io/gguf.h"
#include "model/gguf_model.h"
#include "model/transformer.h"
#include "model/tensor_shapes.h"
#include "quant/gguf_export.h"
#include "test_support.h"
#include "torch_support.h"
#include "util/error.h"

using namespace anvil;

namespace {

std::filesystem::path ref(const std::string& type) { return test::shared_dir() / "refs" / "gguf" / ("base-" + type + ".gguf"); }

// Every tensor of `ours` has the same type, dims and bytes as llama.cpp's file.
void expect_same_tensors(const std::filesystem::path& ours_path, const std::string& type) {
  io::GgufFile ours(ours_path), theirs(ref(type));
  ASSERT_EQ(ours.tensors().size(), theirs.tensors().size()) << type;
  int differing = 0;
  for (const auto& t : theirs.tensors()) {
    const io::GgufTensorInfo* o = ours.find_tensor(t.name);
    ASSERT_NE(o, nullptr) << type << ": missing " << t.name;
    EXPECT_EQ(o->type, t.type) << type << ": " << t.name << " type";
    EXPECT_EQ(o->dims, t.dims) << type << ": " << t.name;
    if (o->type == t.type && o->nbytes == t.nbytes && std::memcmp(o->data.data(), t.data.data(), t.nbytes) != 0)
      ADD_FAILURE() << type << ": " << t.name << " bytes differ (" << ++differing << ")";
  }
  for (const char* key : {"general.architecture", "llama.block_count", "llama.attention.head_count_kv",
                          "llama.rope.freq_base", "tokenizer.ggml.pre", "tokenizer.ggml.bos_token_id",
                          "general.file_type"}) {
    ASSERT_NE(ours.find(key), nullptr) << key;
    EXPECT_EQ(ours.find(key)->as_float(), theirs.find(key)->as_float()) << key;
    if (ours.find(key)->as_string()) {
      EXPECT_EQ(*ours.find(key)->as_string(), *theirs.find(key)->as_string()) << key;
    }
  }
  const auto* tokens = ours.find("tokenizer.ggml.tokens")->as_array();
  const auto* their_tokens = theirs.find("tokenizer.ggml.tokens")->as_array();
  ASSERT_EQ(tokens->values.size(), their_tokens->values.size());
  for (size_t i = 0; i < tokens->values.size(); ++i)
    ASSERT_EQ(*tokens->values[i].as_string(), *their_tokens->values[i].as_string()) << "token " << i;
  EXPECT_EQ(ours.find("tokenizer.ggml.merges")->as_array()->values.size(),
            theirs.find("tokenizer.ggml.merges")->as_array()->values.size());
}

class GgufExportTest : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(GgufExportTest, MatchesLlamaCppTensorByTensor) {
  test::TempDir dir;
  quant::GgufExportOptions opts;
  opts.type = GetParam();
  opts.threads = 2;
  quant::export_gguf(test::model_dir("base"), dir / "out.gguf", opts);
  expect_same_tensors(dir / "out.gguf", GetParam());
}

INSTANTIATE_TEST_SUITE_P(LlamaCpp, GgufExportTest, ::testing::Values("F16", "Q8_0", "Q4_0", "Q6_K", "Q4_K_M"));

TEST(GgufExport, RequantizingAGgufAppliesTheSameRules) {
  // From llama.cpp's F16 file: the per-tensor types must equal llama-quantize's. Bytes can differ
  // where base's bf16 weights fall below f16's normal range (f16 rounds them, F32 would not), so
  // only most tensors are byte-identical; the direct conversion above is the exact test.
  test::TempDir dir;
  quant::GgufExportOptions opts;
  opts.type = "Q4_K_M";
  quant::export_gguf(ref("F16"), dir / "q.gguf", opts);
  io::GgufFile ours(dir / "q.gguf"), theirs(ref("Q4_K_M"));
  int identical = 0;
  for (const auto& t : theirs.tensors()) {
    const auto* o = ours.find_tensor(t.name);
    ASSERT_NE(o, nullptr) << t.name;
    EXPECT_EQ(o->type, t.type) << t.name;
    identical += o->nbytes == t.nbytes && std::memcmp(o->data.data(), t.data.data(), t.nbytes) == 0;
  }
  EXPECT_GE(identical, 70) << "of " << theirs.tensors().size();
}

TEST(GgufExport, GgufToHuggingFaceRoundTrip) {
  c10::InferenceMode guard;
  test::TempDir dir;
  quant::export_hf_from_gguf(ref("F16"), dir / "hf", "f32");
  auto back = model::Transformer::load(dir / "hf");
  auto direct = model::load_gguf_transformer(io::GgufFile(ref("F16")));
  auto ids = test::load_reference(test::shared_dir() / "refs" / "base_logits_val.safetensors")["input_ids.1"].unsqueeze(0);
  EXPECT_LT(test::max_abs_diff(back->forward(ids), direct->forward(ids)), 1e-5);
}

TEST(GgufExport, RejectsUnknownTypeAndLeavesNothing) {
  test::TempDir dir;
  quant::GgufExportOptions opts;
  opts.type = "Q7_X";
  EXPECT_THROW(quant::export_gguf(test::model_dir("base"), dir / "x.gguf", opts), Error);
  EXPECT_EQ(test::count_entries(dir.path()), 0u);
}

// llama3 rotary scaling: transformers applies it to inv_freq from config.json; llama.cpp's
// converter stores per-frequency divisors (rope_freqs.weight) instead. tiny-llama given a llama3
// config (head_dim 16, original context 64: one frequency kept, two smoothed, five divided) must
// give the same logits both ways, and different logits from the unscaled model.
TEST(GgufExport, Llama3RopeScalingSurvivesTheRoundTrip) {
  c10::InferenceMode guard;
  test::TempDir dir;
  std::filesystem::copy(test::model_dir("tiny-llama"), dir / "m", std::filesystem::copy_options::recursive);
  auto cfg = nlohmann::json::parse(test::read_bytes(dir / "m" / "config.json"));
  cfg.erase("rope_parameters");
  cfg["rope_theta"] = 10000.0;
  cfg["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 64}};
  test::write_bytes(dir / "m" / "config.json", cfg.dump());
  quant::GgufExportOptions opts;
  opts.type = "F32";
  quant::export_gguf(dir / "m", dir / "m.gguf", opts);
  io::GgufFile gguf(dir / "m.gguf");
  ASSERT_NE(gguf.find_tensor("rope_freqs.weight"), nullptr);
  auto from_hf = model::Transformer::load(dir / "m");
  auto from_gguf = model::load_gguf_transformer(gguf);
  auto unscaled = model::Transformer::load(test::model_dir("tiny-llama"));
  auto ids = at::arange(5, 69, at::TensorOptions().dtype(at::kLong)).unsqueeze(0);
  auto a = from_hf->forward(ids), b = from_gguf->forward(ids);
  EXPECT_LT(test::max_abs_diff(a, b), 1e-5);
  EXPECT_GT(test::max_abs_diff(a, unscaled->forward(ids)), 1e-3) << "scaling should change the logits";
}

// Mixtral the way llama.cpp's converter writes it: architecture "llama" with expert_count and
// expert_used_count, the router as ffn_gate_inp (kept in F32), and each layer's experts stacked
// into one 3-D tensor per projection (w1 -> ffn_gate_exps, w3 -> ffn_up_exps, w2 -> ffn_down_exps),
// dims {cols, rows, experts}: expert e's rows are the e-th contiguous slice.
TEST(GgufExport, MixtralStacksExpertsAsLlamaCppDoes) {
  c10::InferenceMode guard;
  test::TempDir dir;
  const auto hf_dir = test::model_dir("tiny-mixtral");
  quant::GgufExportOptions opts;
  opts.type = "F32";
  quant::export_gguf(hf_dir, dir / "mx.gguf", opts);
  io::GgufFile gguf(dir / "mx.gguf");
  EXPECT_EQ(*gguf.find("general.architecture")->as_string(), "llama");
  EXPECT_EQ(gguf.find("llama.expert_count")->as_int().value_or(0), 4);
  EXPECT_EQ(gguf.find("llama.expert_used_count")->as_int().value_or(0), 2);
  io::Checkpoint ckpt(hf_dir);
  for (int layer = 0; layer < 2; ++layer) {
    const std::string blk = "blk." + std::to_string(layer) + ".";
    const io::GgufTensorInfo* router = gguf.find_tensor(blk + "ffn_gate_inp.weight");
    ASSERT_NE(router, nullptr);
    EXPECT_EQ(router->dims, (std::vector<uint64_t>{64, 4}));
    for (auto [gguf_name, hf_name, dims] :
         {std::tuple{"ffn_gate_exps", "w1", std::vector<uint64_t>{64, 128, 4}},
          std::tuple{"ffn_up_exps", "w3", std::vector<uint64_t>{64, 128, 4}},
          std::tuple{"ffn_down_exps", "w2", std::vector<uint64_t>{128, 64, 4}}}) {
      const io::GgufTensorInfo* t = gguf.find_tensor(blk + gguf_name + ".weight");
      ASSERT_NE(t, nullptr) << blk << gguf_name;
      EXPECT_EQ(t->dims, dims) << blk << gguf_name;
      for (int e = 0; e < 4; ++e) {
        const auto& expert = ckpt.get("model.layers." + std::to_string(layer) + ".block_sparse_moe.experts." +
                                      std::to_string(e) + "." + hf_name + ".weight");
        ASSERT_EQ(expert.bytes.size() * 4, t->nbytes);  // f32 in both
        EXPECT_EQ(0, std::memcmp(t->data.data() + e * expert.bytes.size(), expert.bytes.data(), expert.bytes.size()))
            << blk << gguf_name << " expert " << e;
      }
    }
  }
  // anvil runs the GGUF as transformers runs the checkpoint (same 1e-5 bound as the HF loader).
  auto ref = test::load_reference(hf_dir / "reference_logits.safetensors");
  auto from_gguf = model::load_gguf_transformer(gguf);
  for (int i = 0; ref.count("input_ids." + std::to_string(i)); ++i) {
    auto ids = ref["input_ids." + std::to_string(i)].unsqueeze(0);
    EXPECT_LT(test::max_abs_diff(from_gguf->forward(ids)[0], ref["logits." + std::to_string(i)]), 1e-5) << i;
  }
  // And back to Hugging Face: every tensor bit for bit, config with the expert counts.
  quant::export_hf_from_gguf(dir / "mx.gguf", dir / "hf", "f32");
  io::Checkpoint back(dir / "hf");
  ASSERT_EQ(back.names().size(), ckpt.names().size());
  for (const auto& name : ckpt.names()) {
    ASSERT_TRUE(back.contains(name)) << name;
    EXPECT_EQ(0, std::memcmp(back.get(name).bytes.data(), ckpt.get(name).bytes.data(), ckpt.get(name).bytes.size()))
        << name;
  }
  auto cfg = nlohmann::json::parse(test::read_bytes(dir / "hf" / "config.json"));
  EXPECT_EQ(cfg["num_local_experts"], 4);
  EXPECT_EQ(cfg["num_experts_per_tok"], 2);
  EXPECT_EQ(cfg["model_type"], "mixtral");
}

// A GGUF whose expert_count disagrees with its stacked tensors, or whose stacks are missing, is
// refused with an error rather than read out of bounds.
TEST(GgufExport, MixtralWithInconsistentExpertsIsRejected) {
  test::TempDir dir;
  quant::GgufExportOptions opts;
  opts.type = "F32";
  quant::export_gguf(test::model_dir("tiny-mixtral"), dir / "mx.gguf", opts);
  io::GgufFile good(dir / "mx.gguf");
  auto rewrite = [&](const std::string& name, int64_t expert_count, const std::string& drop) {
    auto meta = good.metadata();
    for (auto& [k, v] : meta)
      if (k == "llama.expert_count") v = io::GgufValue::u32(static_cast<uint32_t>(expert_count));
    std::vector<io::GgufTensorInfo> infos;
    for (const auto& t : good.tensors())
      if (t.name != drop) infos.push_back({t.name, t.dims, t.type, 0, 0, {}});
    io::GgufWriter w(dir / name, meta, infos);
    for (const auto& t : good.tensors())
      if (t.name != drop) w.write(t.name, t.data);
    w.commit();
    return dir / name;
  };
  EXPECT_THROW(model::load_gguf_transformer(io::GgufFile(rewrite("more.gguf", 8, ""))), Error);
  EXPECT_THROW(model::load_gguf_transformer(io::GgufFile(rewrite("gone.gguf", 4, "blk.1.ffn_down_exps.weight"))), Error);
  EXPECT_THROW(quant::export_hf_from_gguf(dir / "more.gguf", dir / "hf", "f32"), Error);
  EXPECT_FALSE(std::filesystem::exists(dir / "hf"));
}

// Calibration reaches each expert of a stack on its own: a custom encoder (GPTQ's hook) is called
// once per expert with that expert's Hugging Face name, its rows only, and its own importance.
TEST(GgufExport, EncoderSeesEachExpertOfAStackOnItsOwn) {
  test::TempDir dir;
  // Importance comes under GGUF names, a stack's experts one after another (llama-imatrix's layout):
  // expert 2 of layer 1's ffn_down stack (128 columns each) is marked.
  const std::string marked = "model.layers.1.block_sparse_moe.experts.2.w2.weight";
  std::vector<float> stack(4 * 128, 0.0f);
  std::fill(stack.begin() + 2 * 128, stack.begin() + 3 * 128, 7.0f);
  std::map<std::string, std::vector<float>> importance{{"blk.1.ffn_down_exps.weight", stack}};
  struct Call {
    int64_t rows, row;
    float importance;
  };
  std::mutex mutex;
  std::map<std::string, std::vector<Call>> calls;
  quant::GgufExportOptions opts;
  opts.type = "Q8_0";
  opts.threads = 2;
  opts.importance = &importance;
  opts.encoder = [&](const std::string& hf, const quant::QuantType&, const float*, int64_t rows, int64_t row,
                     const float* imp) -> std::optional<std::vector<uint8_t>> {
    std::lock_guard lock(mutex);
    calls[hf].push_back({rows, row, imp ? imp[0] : 0.0f});
    return std::nullopt;
  };
  quant::export_gguf(test::model_dir("tiny-mixtral"), dir / "mx.gguf", opts);
  for (int layer = 0; layer < 2; ++layer)
    for (int e = 0; e < 4; ++e)
      for (auto [proj, rows, row] : {std::tuple{"w1", 128, 64}, std::tuple{"w3", 128, 64}, std::tuple{"w2", 64, 128}}) {
        const std::string hf = "model.layers." + std::to_string(layer) + ".block_sparse_moe.experts." +
                               std::to_string(e) + "." + proj + ".weight";
        ASSERT_EQ(calls[hf].size(), 1u) << hf;
        EXPECT_EQ(calls[hf][0].rows, rows) << hf;
        EXPECT_EQ(calls[hf][0].row, row) << hf;
        EXPECT_EQ(calls[hf][0].importance, hf == marked ? 7.0f : 0.0f) << hf;
      }
  ASSERT_EQ(calls["model.layers.0.self_attn.q_proj.weight"].size(), 1u);
  EXPECT_EQ(calls["model.layers.0.self_attn.q_proj.weight"][0].rows, 64);
}

// Files come from strangers: a tensor with a zero dimension or none at all (a scalar) must not
// crash the export (a division by the row length, once). Every tensor the family describes must
// have the shape config.json implies, so such a tensor is refused by name before any arithmetic.
TEST(GgufExport, EmptyAndScalarTensorsAreRefusedByNameNotCrashedOn) {
  const auto src = test::model_dir("tiny-llama");
  io::Checkpoint ckpt(src);
  const std::pair<const char*, std::vector<int64_t>> odd_tensors[] = {{"model.norm.weight", {}},
                                                                      {"model.layers.0.input_layernorm.weight", {0}}};
  for (const auto& [odd, shape] : odd_tensors) {
    test::TempDir dir;
    std::filesystem::create_directories(dir / "odd");
    for (const auto* f : {"config.json", "tokenizer.json", "tokenizer_config.json"})
      std::filesystem::copy_file(src / f, dir / "odd" / f);
    std::vector<io::OwnedTensor> tensors;
    for (const auto& name : ckpt.names()) {
      const auto& v = ckpt.get(name);
      io::OwnedTensor t{v.spec, std::vector<uint8_t>(v.bytes.begin(), v.bytes.end())};
      if (name == odd) {
        t.spec.shape = shape;
        t.bytes.resize(static_cast<size_t>(t.spec.nbytes()));
      }
      tensors.push_back(std::move(t));
    }
    io::write_safetensors(dir / "odd" / "model.safetensors", tensors);
    for (const char* type : {"F32", "Q8_0"}) {
      quant::GgufExportOptions opts;
      opts.type = type;
      const auto out = dir / (std::string(type) + ".gguf");
      try {
        quant::export_gguf(dir / "odd", out, opts);
        ADD_FAILURE() << "accepted " << odd << " of shape " << model::shape_string(shape);
      } catch (const Error& e) {
        const std::string expected = "odd/config.json: tensor '" + std::string(odd) + "' has shape " +
                                     model::shape_string(shape) + " but config.json implies [64]";
        EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
      }
      EXPECT_FALSE(std::filesystem::exists(out));
    }
  }
}

// Provenance in GGUF (issue #13): llama.cpp's general.* keys with gguf-py's types, the size label
// as gguf-py's size_label() gives it (values printed by gguf-py 0.19's utility.size_label), the
// source card's license and base models (a Hub id split as llama.cpp's converter splits it), and
// the keys llama.cpp's own files share keep their types.
TEST(GgufExport, WritesLlamaCppsProvenanceKeys) {
  EXPECT_EQ(quant::gguf_size_label(8'400'000, 0, 0), "8.4M");
  EXPECT_EQ(quant::gguf_size_label(8'388'608, 0, 0), "8.4M");
  EXPECT_EQ(quant::gguf_size_label(1'235'814'400, 0, 0), "1.2B");
  EXPECT_EQ(quant::gguf_size_label(999'000, 0, 0), "999K");
  EXPECT_EQ(quant::gguf_size_label(7'241'732'096, 0, 0), "7.2B");
  EXPECT_EQ(quant::gguf_size_label(46'702'792'704, 0, 0), "47B");
  EXPECT_EQ(quant::gguf_size_label(1'000'000'000, 6'000'000'000, 8), "8x7.0B");

  test::TempDir dir;
  // base with a card naming its license and base model.
  const auto src = dir / "base";
  std::filesystem::create_directories(src);
  for (const auto& e : std::filesystem::directory_iterator(test::model_dir("base")))
    std::filesystem::create_symlink(e.path(), src / e.path().filename());
  test::write_bytes(src / "README.md", "---\nlicense: apache-2.0\nbase_model: meta-llama/Llama-3.2-1B\ntags:\n- debian\n---\n# base\n");
  quant::GgufExportOptions opts;
  opts.type = "Q4_K_M";
  quant::export_gguf(src, dir / "q.gguf", opts);
  io::GgufFile g(dir / "q.gguf");
  auto str = [&](const char* k) {
    const io::GgufValue* v = g.find(k);
    EXPECT_NE(v, nullptr) << k;
    EXPECT_TRUE(v && v->type == io::GgufType::STRING) << k;
    return v && v->as_string() ? *v->as_string() : std::string();
  };
  EXPECT_EQ(str("general.name"), "base");
  EXPECT_EQ(str("general.basename"), "base");
  EXPECT_EQ(str("general.size_label"), "8.4M");
  EXPECT_EQ(str("general.license"), "apache-2.0");
  EXPECT_EQ(str("general.quantized_by"), "anvil");
  ASSERT_NE(g.find("general.base_model.count"), nullptr);
  EXPECT_EQ(g.find("general.base_model.count")->type, io::GgufType::UINT32);
  EXPECT_EQ(g.find("general.base_model.count")->as_int(), 1);
  EXPECT_EQ(str("general.base_model.0.name"), "Llama-3.2-1B");
  EXPECT_EQ(str("general.base_model.0.organization"), "meta-llama");
  EXPECT_EQ(str("general.base_model.0.repo_url"), "https://huggingface.co/meta-llama/Llama-3.2-1B");
  const io::GgufArray* tags = g.find("general.tags")->as_array();
  ASSERT_NE(tags, nullptr);
  EXPECT_EQ(tags->type, io::GgufType::STRING);
  std::vector<std::string> t;
  for (const auto& v : tags->values) t.push_back(*v.as_string());
  EXPECT_EQ(t, (std::vector<std::string>{"anvil", "debian", "Q4_K_M"}));
  // The keys a llama.cpp-written file of the same type has, with the same types.
  io::GgufFile theirs(test::shared_dir() / "refs" / "gguf" / "base-Q4_K_M.gguf");
  for (const auto& [k, v] : theirs.metadata())
    if (k.rfind("general.", 0) == 0) {
      ASSERT_NE(g.find(k), nullptr) << k;
      EXPECT_EQ(g.find(k)->type, v.type) << k;
    }
  // F16 is not a quantization: no quantized_by.
  opts.type = "F16";
  quant::export_gguf(src, dir / "f.gguf", opts);
  EXPECT_EQ(io::GgufFile(dir / "f.gguf").find("general.quantized_by"), nullptr);
}
