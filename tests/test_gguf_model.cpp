// llama.cpp's GGUF files of base run in anvil's kernel: the F16 file reproduces the Hugging Face
// model's logits (names and the rotary row permutation mapped back correctly), and quantized
// files lose perplexity within what llama.cpp itself measured for them.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include "eval/perplexity.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "model/gguf_model.h"
#include "test_support.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/tokenizer.h"
#include "torch_support.h"

using namespace anvil;

namespace {
std::filesystem::path ref(const std::string& type) { return test::shared_dir() / "refs" / "gguf" / ("base-" + type + ".gguf"); }
}  // namespace

TEST(GgufModel, F16FileGivesTheHuggingFaceLogits) {
  c10::InferenceMode guard;
  io::GgufFile gguf(ref("F16"));
  auto from_gguf = model::load_gguf_transformer(gguf);
  // llama.cpp computes rotary frequencies in fp32 (no bf16 rounding), so compare with the HF
  // checkpoint run the same way; bf16 -> f16 is exact for these weights.
  auto config = model::ModelConfig::load(test::model_dir("base"));
  config.dtype = "float32";
  io::Checkpoint ckpt(test::model_dir("base"));
  auto from_hf = model::Transformer::from_checkpoint(config, ckpt);
  auto ids = test::load_reference(test::shared_dir() / "refs" / "base_logits_val.safetensors")["input_ids.0"].unsqueeze(0);
  double diff = test::max_abs_diff(from_gguf->forward(ids), from_hf->forward(ids));
  std::printf("  F16 GGUF vs HF: max |logit diff| %.3g\n", diff);
  EXPECT_LT(diff, 1e-4);
}

TEST(GgufModel, TokenizerFromGgufMetadataMatchesTokenizerJson) {
  io::GgufFile gguf(ref("Q8_0"));
  auto from_gguf = tokenizer::Tokenizer::from_json(tokenizer::tokenizer_json_from_gguf(gguf), "gguf");
  auto from_json = tokenizer::Tokenizer::load(test::model_dir("base"));
  auto text = io::read_text_file(test::shared_dir() / "data" / "fortune.val.txt").substr(0, 20000) +
              " <|im_start|>user\nhi<|im_end|> caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac";
  EXPECT_EQ(from_gguf.encode(text), from_json.encode(text));
  EXPECT_EQ(from_gguf.encode("x", true), from_json.encode("x", false));  // the GGUF says add_bos_token = false
}

// llama.cpp's measurements (../shared/README.md, pkg.val, F32 14.7356): Q8_0 +0.07%, Q4_K_M
// +3.02%, Q4_0 +6.15%. Those include llama.cpp quantizing activations for its dot products;
// anvil dequantizes weights and keeps activations fp32, so its loss must be positive for the
// 4-bit files and no larger than llama.cpp's.
TEST(GgufModel, QuantizedFilesLoseWhatLlamaCppMeasured) {
  auto tok = tokenizer::Tokenizer::load(test::model_dir("base"));
  auto tokens = tok.encode(io::read_text_file(test::shared_dir() / "data" / "pkg.val.txt"));
  const double hf = 14.7355782369638;
  for (auto [type, llama_cpp_loss] : {std::pair{"Q8_0", 0.0007}, {"Q4_K_M", 0.0302}, {"Q4_0", 0.0615}}) {
    io::GgufFile gguf(ref(type));
    auto m = model::load_gguf_transformer(gguf);
    eval::PerplexityOptions opts;
    opts.threads = 2;
    double loss = eval::evaluate_perplexity(*m, tokens, opts).perplexity / hf - 1;
    std::printf("  %s: %+.3f%% (llama.cpp %+.2f%%)\n", type, loss * 100, llama_cpp_loss * 100);
    EXPECT_LE(loss, llama_cpp_loss) << type;
    if (llama_cpp_loss > 0.01) {
      EXPECT_GT(loss, 0.5 * llama_cpp_loss) << type;
    }
  }
}
