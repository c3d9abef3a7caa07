// Merge inputs that are not float safetensors: GGUF files written by llama.cpp's converter and
// llama-quantize (refs/gguf, models/tiny-*/model-f32.gguf) and INT4/INT8 safetensors. A
// passthrough merge writes its input as the model it stands for, so each case compares the
// output with an independent reading of the same weights: the Hugging Face checkpoint the GGUF
// was converted from (rounded as the converter rounds), or the whole-tensor decoders already
// checked against ggml and the INT formats' definitions. Streaming is forced into small row
// chunks (about 20k elements), so the row-by-row decoding is what is checked. ("Passthrough" here
// is a linear merge of one model with weight 1: 1 * x / 1 is x exactly.)
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/gguf.h"
#include "merge/merge.h"
#include "model/config.h"
#include "model/gguf_tensors.h"
#include "model/tensor_bridge.h"
#include "model/transformer.h"
#include "quant/int_export.h"
#include "quant/int_formats.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "torch_support.h"
#include "util/error.h"

using namespace anvil;
namespace fs = std::filesystem;

namespace {

fs::path passthrough(const test::TempDir& dir, const fs::path& model, const std::string& name = "out") {
  io::write_text_file(dir / (name + ".yaml"),
                      "merge_method: linear\nmodels:\n  - model: " + model.string() +
                          "\n    parameters: {weight: 1.0}\ndtype: float32\n");
  merge::MergeOptions opts;
  opts.threads = 2;
  opts.chunk_elements = 20000;
  merge::run_merge(merge::MergeConfig::load(dir / (name + ".yaml")), dir / name, opts);
  return dir / name;
}

at::Tensor tensor(const io::Checkpoint& c, const std::string& name) { return model::load_tensor(c.get(name), at::kFloat); }

}  // namespace

// llama.cpp's converter wrote base-F16.gguf from models/base (bf16): matrices rounded to f16
// (round to nearest even, numpy's astype), vectors kept in f32. The merge must read back every
// tensor under its Hugging Face name, q/k rows in Hugging Face's order, bit for bit.
TEST(MergeInputs, GgufFromLlamaCppsConverterReadsBackAsItsCheckpoint) {
  c10::InferenceMode guard;
  test::TempDir dir;
  const fs::path out = passthrough(dir, test::shared_dir() / "refs/gguf/base-F16.gguf");
  io::Checkpoint got(out), base(test::model_dir("base"));
  ASSERT_EQ(got.names().size(), base.names().size());
  for (const auto& name : base.names()) {
    at::Tensor want = tensor(base, name);
    if (want.dim() >= 2) want = want.to(at::kHalf).to(at::kFloat);
    ASSERT_TRUE(at::equal(tensor(got, name), want)) << name;
  }
  // The merged model keeps the GGUF's tokenizer: the same ids as the original's on real text.
  auto a = tokenizer::Tokenizer::load(out), b = tokenizer::Tokenizer::load(test::model_dir("base"));
  const std::string text = "Changelog: fixed a crash when the fortune cookie was empty.\n";
  EXPECT_EQ(a.encode(text), b.encode(text));
  EXPECT_NO_THROW(model::Transformer::load(out));
  EXPECT_EQ(model::ModelConfig::load(out).num_layers, model::ModelConfig::load(test::model_dir("base")).num_layers);
}

// Families whose GGUF stores values transformed (Gemma's norms as 1 + w, Qwen3's q/k norms) or
// other layouts: the f32 GGUFs llama.cpp's converter wrote beside the tiny models read back as
// the models. Matrices are exact; a Gemma norm passes through 1 + w - 1 in f32 (one rounding of
// the sum: |error| <= 2^-24 * |1 + w|, within 1e-6 for these weights).
TEST(MergeInputs, FamilyGgufsReadBackAsTheirCheckpoints) {
  c10::InferenceMode guard;
  for (const char* family : {"tiny-qwen3", "tiny-gemma", "tiny-gemma3", "tiny-phi3", "tiny-qwen2-moe"}) {
    SCOPED_TRACE(family);
    test::TempDir dir;
    const fs::path out = passthrough(dir, test::model_dir(family) / "model-f32.gguf");
    io::Checkpoint got(out), hf(test::model_dir(family));
    for (const auto& name : hf.names()) {
      if (!got.contains(name)) {
        // Only a tied LM head may be missing (llama.cpp reuses token_embd).
        EXPECT_EQ(name, "lm_head.weight");
        continue;
      }
      const at::Tensor want = tensor(hf, name), have = tensor(got, name);
      ASSERT_EQ(have.sizes(), want.sizes()) << name;
      EXPECT_LE(test::max_abs_diff(have, want), want.dim() >= 2 ? 0.0 : 1e-6) << name;
    }
  }
}

// Quantized GGUFs from llama-quantize: each streamed row equals the whole-tensor decoder (checked
// against ggml's own vectors elsewhere), and Q8_0 stays within its format's bound of the model
// it came from (half a step, max |x| / 127 / 2 per 32-value block, plus the f16 scale's rounding: 127 x 2^-11 of a step).
TEST(MergeInputs, QuantizedGgufsStreamRowsAsTheWholeTensorDecoderGives) {
  c10::InferenceMode guard;
  io::Checkpoint base(test::model_dir("base"));
  for (const char* file : {"base-Q8_0.gguf", "base-Q4_K_M.gguf", "base-Q6_K.gguf"}) {
    SCOPED_TRACE(file);
    test::TempDir dir;
    const fs::path gguf_path = test::shared_dir() / "refs/gguf" / file;
    const fs::path out = passthrough(dir, gguf_path);
    io::GgufFile gguf(gguf_path);
    const auto config = model::ModelConfig::from_gguf(gguf);
    io::Checkpoint got(out);
    for (const auto& name : got.names()) {
      const auto whole = model::read_gguf_hf_tensor(gguf, config, name);
      const at::Tensor want = at::from_blob(const_cast<float*>(whole.values.data()), whole.shape, at::kFloat);
      ASSERT_TRUE(at::equal(tensor(got, name), want)) << name;
      if (std::string(file) == "base-Q8_0.gguf" && want.dim() == 2) {
        const at::Tensor orig = tensor(base, name), blocks = orig.reshape({-1, 32});
        const at::Tensor bound = blocks.abs().amax(1, true) / 127 * (0.5 + 0.07) + 1e-7;
        EXPECT_TRUE((tensor(got, name).reshape({-1, 32}) - blocks).abs().le(bound).all().item<bool>()) << name;
      }
    }
  }
}

// INT4 compressed-tensors and INT8 GPTQ checkpoints: the merge reads each quantized weight under
// its ".weight" name, unpacking only the rows of each chunk, and gets the whole weight's
// dequantization; the written config has no quantization_config, so it loads as a float model.
TEST(MergeInputs, IntCheckpointsStreamAsTheirDequantizedWeights) {
  c10::InferenceMode guard;
  test::TempDir dir;
  struct Case {
    quant::IntFormat format;
    int bits;
  };
  for (const Case c : {Case{quant::IntFormat::CompressedTensors, 4}, Case{quant::IntFormat::Gptq, 8}}) {
    const std::string name = c.format == quant::IntFormat::Gptq ? "gptq" : "ct";
    SCOPED_TRACE(name);
    quant::IntExportOptions opts;
    opts.format = c.format;
    opts.spec = {c.bits, 32};
    quant::export_int_safetensors(test::model_dir("base"), dir / name, opts);
    const fs::path out = passthrough(dir, dir / name, name + "-merged");
    io::Checkpoint q(dir / name), got(out);
    const auto info = quant::detect_int_checkpoint(dir / name);
    ASSERT_TRUE(info);
    int quantized = 0;
    for (const auto& t : quant::logical_tensors(q, *info)) {
      const at::Tensor want = t.quantized ? quant::load_int_weight(q, t.name, *info) : tensor(q, t.name);
      ASSERT_TRUE(at::equal(tensor(got, t.name), want)) << t.name;
      quantized += t.quantized;
    }
    EXPECT_GT(quantized, 0);
    EXPECT_EQ(got.names().size(), io::Checkpoint(test::model_dir("base")).names().size());
    EXPECT_FALSE(model::ModelConfig::load(out).raw_json.find("quantization_config") != std::string::npos);
    EXPECT_NO_THROW(model::Transformer::load(out));
  }
}

// Task arithmetic over a Q8_0 base: with weights 0.3 + 0.3 the result is 0.4 base + 0.3 (a + b),
// so it differs from the float merge by exactly 0.4 times the base's quantization error, which
// Q8_0 bounds per 32-value block (as above); fp32 rounding adds at most a few ulps.
TEST(MergeInputs, TaskArithmeticOverAQuantizedBaseMovesByItsQuantizationError) {
  c10::InferenceMode guard;
  test::TempDir dir;
  auto run = [&](const fs::path& base, const std::string& name) {
    io::write_text_file(dir / (name + ".yaml"), "merge_method: task_arithmetic\nbase_model: " + base.string() +
                                                    "\nmodels:\n  - model: " + test::model_dir("ft-fortune").string() +
                                                    "\n    parameters: {weight: 0.3}\n  - model: " +
                                                    test::model_dir("ft-changelog").string() +
                                                    "\n    parameters: {weight: 0.3}\ndtype: float32\n");
    merge::MergeOptions opts;
    opts.threads = 2;
    merge::run_merge(merge::MergeConfig::load(dir / (name + ".yaml")), dir / name, opts);
    return dir / name;
  };
  io::Checkpoint f(run(test::model_dir("base"), "float")), q(run(test::shared_dir() / "refs/gguf/base-Q8_0.gguf", "q8"));
  io::Checkpoint base(test::model_dir("base"));
  for (const std::string name : {"model.layers.3.mlp.down_proj.weight", "model.layers.0.self_attn.k_proj.weight"}) {
    const at::Tensor blocks = tensor(base, name).reshape({-1, 32});
    const at::Tensor diff = (tensor(f, name) - tensor(q, name)).reshape({-1, 32}).abs();
    const at::Tensor bound = 0.4 * (blocks.abs().amax(1, true) / 127 * 0.57) + 1e-6;
    EXPECT_GT(diff.max().item<double>(), 0.0) << name;
    EXPECT_TRUE(diff.le(bound).all().item<bool>()) << name;
  }
}

// Bad inputs fail before the output exists, naming the file.
TEST(MergeInputs, AFileThatIsNotGgufIsRefusedByName) {
  test::TempDir dir;
  io::write_text_file(dir / "model.gguf", "not a gguf at all");
  io::write_text_file(dir / "c.yaml", "merge_method: linear\nmodels:\n  - model: " + (dir / "model.gguf").string() +
                                          "\n    parameters: {weight: 1.0}\n");
  try {
    merge::run_merge(merge::MergeConfig::load(dir / "c.yaml"), dir / "out", {});
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.gguf"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "out"));
}

// merge -o OUT.gguf in one pass writes the file that merging to a directory and then running
// export_gguf (anvil quantize, byte-identical to llama-quantize: test_gguf_export) writes: the
// same bytes, header and metadata included, when the directory has the GGUF's name. Covers
// llama's rotary rows (the fixture pair), a MoE's expert stacks (tiny-mixtral) and a GGUF input.
TEST(MergeToGguf, OnePassWritesTheBytesOfMergeThenQuantize) {
  c10::InferenceMode guard;
  struct Case {
    std::string name, yaml, type;
  };
  const std::string pair = "\n    parameters: {weight: 0.5, density: 0.5}\n";
  const Case cases[] = {
      {"ties-q4km", "merge_method: ties\nbase_model: " + test::model_dir("base").string() + "\nmodels:\n  - model: " +
                        test::model_dir("ft-fortune").string() + pair + "  - model: " +
                        test::model_dir("ft-changelog").string() + pair,
       "Q4_K_M"},
      {"ties-q8-gguf-base", "merge_method: ties\nbase_model: " + (test::shared_dir() / "refs/gguf/base-Q6_K.gguf").string() +
                                "\nmodels:\n  - model: " + test::model_dir("ft-fortune").string() + pair + "  - model: " +
                                test::model_dir("ft-changelog").string() + pair,
       "Q8_0"},
      {"mixtral-q4km", "merge_method: linear\nmodels:\n  - model: " + test::model_dir("tiny-mixtral").string() +
                           "\n    parameters: {weight: 0.7}\n  - model: " + test::model_dir("tiny-mixtral").string() +
                           "\n    parameters: {weight: 0.3}\ndtype: float16\n",
       "Q4_K_M"},
      {"slerp-bf16", "merge_method: slerp\nbase_model: " + test::model_dir("ft-fortune").string() +
                         "\nmodels:\n  - model: " + test::model_dir("ft-fortune").string() + "\n  - model: " +
                         test::model_dir("ft-changelog").string() + "\nparameters: {t: 0.4}\n",
       ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    test::TempDir dir;
    io::write_text_file(dir / "c.yaml", c.yaml);
    const auto config = merge::MergeConfig::load(dir / "c.yaml");
    merge::MergeOptions opts;
    opts.threads = 2;
    opts.chunk_elements = 20000;
    fs::create_directories(dir / "one-pass");
    fs::create_directories(dir / "two-step");
    quant::GgufExportOptions g;
    g.type = c.type;
    opts.to_gguf = g;
    const auto one = merge::run_merge(config, dir / "one-pass" / "m.gguf", opts);
    EXPECT_EQ(one.gguf_type, c.type.empty() ? "BF16" : c.type);
    EXPECT_FALSE(fs::exists(dir / "one-pass" / "m.gguf.files")) << "the scratch directory stayed";
    opts.to_gguf.reset();
    merge::run_merge(config, dir / "two-step" / "m", opts);
    quant::GgufExportOptions q;
    q.type = c.type.empty() ? "BF16" : c.type;
    q.threads = 2;
    quant::export_gguf(dir / "two-step" / "m", dir / "two-step" / "m.gguf", q);
    const auto a = test::read_bytes(dir / "one-pass" / "m.gguf"), b = test::read_bytes(dir / "two-step" / "m.gguf");
    ASSERT_GT(a.size(), 1000u);
    EXPECT_TRUE(a == b) << "one-pass " << a.size() << " bytes, two-step " << b.size();
  }
}
