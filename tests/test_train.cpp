// LoRA training: gradients against finite differences, checkpointing, AdamW and the schedule
// against their closed forms, data formats and masks, PEFT's file format, a short run that
// learns, and a resumed run that repeats the uninterrupted one exactly.
#include <ATen/core/grad_mode.h>  // at::NoGradGuard (not reached through ATen.h in LibTorch 2.x)
#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "model/dropout.h"
#include "model/lora_adapter.h"
#include "model/transformer.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "torch_support.h"
#include "train/adamw.h"
#include "train/dataset.h"
#include "train/lora_parameters.h"
#include "train/recipe.h"
#include "train/trainer.h"
#include "util/error.h"

#include <ATen/CPUGeneratorImpl.h>

using namespace anvil;
namespace fs = std::filesystem;

namespace {

fs::path write_file(const test::TempDir& dir, const std::string& name, const std::string& text) {
  io::write_text_file(dir / name, text);
  return dir / name;
}

// A small recipe on base, fast enough for CI: short windows, few steps.
std::string small_recipe(const test::TempDir& dir, const std::string& extra = "") {
  const std::string shared = test::shared_dir().string();
  return "base_model: " + shared + "/models/base\noutput_dir: " + (dir / "out").string() +
         "\ndatasets:\n  - path: " + shared + "/data/fortune.train.txt\n    type: raw\n" +
         "val_dataset:\n  path: " + shared + "/data/fortune.val.txt\n  type: raw\n" +
         "val_max_examples: 24\nsequence_len: 64\nlora:\n  r: 8\n  alpha: 16\n"
         "  target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]\n"
         "optimizer:\n  lr: 3.0e-3\nwarmup_steps: 2\nmicro_batch_size: 8\nthreads: 2\nseed: 7\n" + extra;
}

at::Tensor loss_of(const model::Transformer& m, const at::Tensor& ids) {
  auto labels = ids.clone();
  return train::causal_lm_loss(m.forward(ids), labels);
}

}  // namespace

// The unmerged LoRA path in fp64: d(loss)/dA and d(loss)/dB from autograd agree with central
// differences to ~1e-7 relative (the step is 1e-6; the truncation error is O(step^2)).
TEST(TrainLora, GradientsMatchFiniteDifferences) {
  model::LoadOptions opts;
  opts.compute_dtype = at::kDouble;
  auto m = model::Transformer::load(test::model_dir("tiny-llama"), opts);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  std::vector<std::pair<std::string, std::vector<at::Tensor>>> attached;
  for (const std::string w : {"model.layers.0.self_attn.k_proj.weight", "model.layers.1.mlp.down_proj.weight",
                              "model.layers.0.mlp.up_proj.weight"}) {
    auto shape = m->adaptable_shape(w);
    auto A = (at::randn({4, shape[1]}, gen, at::kDouble) * 0.1).requires_grad_(true);
    auto B = (at::randn({shape[0], 4}, gen, at::kDouble) * 0.1).requires_grad_(true);
    m->attach_lora(w, A, B, 2.0, 0.0);
    attached.push_back({w, {A, B}});
  }
  auto ids = at::randint(0, m->config().vocab_size, {2, 12}, gen, at::kLong);
  loss_of(*m, ids).backward();
  int checked = 0;
  for (auto& [name, tensors] : attached)
    for (auto& t : tensors) {
      for (int64_t flat : {int64_t{0}, t.numel() / 2, t.numel() - 1}) {
        double analytic = t.grad().view(-1)[flat].item<double>();
        double numeric;
        {
          at::NoGradGuard no_grad;
          const double h = 1e-6, orig = t.view(-1)[flat].item<double>();
          t.view(-1)[flat].fill_(orig + h);
          double up = loss_of(*m, ids).item<double>();
          t.view(-1)[flat].fill_(orig - h);
          double down = loss_of(*m, ids).item<double>();
          t.view(-1)[flat].fill_(orig);
          numeric = (up - down) / (2 * h);
        }
        EXPECT_NEAR(analytic, numeric, 1e-7 + 1e-6 * std::fabs(numeric)) << name << " element " << flat;
        ++checked;
      }
    }
  EXPECT_EQ(checked, 18);
}

// Recomputing layers in the backward pass (with dropout: the masks must repeat) gives the same
// gradients as keeping the activations.
TEST(TrainLora, GradientCheckpointingGivesTheSameGradients) {
  auto m = model::Transformer::load(test::model_dir("tiny-llama"));
  train::LoraSpec spec;
  spec.r = 4;
  spec.dropout = 0.2;
  train::LoraParameters lora(*m, spec, 5, at::kCPU);
  lora.attach(*m);
  m->set_training(true);
  {
    at::NoGradGuard no_grad;  // B starts at zero; make it matter
    for (size_t i = 1; i < lora.tensors().size(); i += 2) lora.tensors()[i].normal_(0, 0.05);
  }
  auto ids = at::randint(0, m->config().vocab_size, {2, 16}, at::kLong);
  std::vector<std::vector<at::Tensor>> grads;
  for (bool checkpoint : {false, true}) {
    m->set_gradient_checkpointing(checkpoint);
    model::DropoutRandomness rng(at::make_generator<at::CPUGeneratorImpl>(11));
    loss_of(*m, ids).backward();
    std::vector<at::Tensor> g;
    for (const auto& t : lora.tensors()) {
      g.push_back(t.grad().clone());
      t.mutable_grad().reset();
    }
    grads.push_back(g);
  }
  for (size_t i = 0; i < grads[0].size(); ++i) EXPECT_LT(test::max_abs_diff(grads[0][i], grads[1][i]), 1e-6) << i;
  EXPECT_GT(grads[0][0].abs().max().item<double>(), 0);
}

// torch.optim.AdamW's update written out by hand: step 1 moves by lr * g / (|g| + eps) after
// decay; step 2 with the bias-corrected moments.
TEST(TrainOptimizer, AdamWMatchesTheClosedForm) {
  auto p = at::tensor({1.0, -2.0}, at::kDouble).requires_grad_(true);
  train::OptimizerSpec spec;
  spec.weight_decay = 0.01;
  train::AdamW opt({p}, spec);
  p.mutable_grad() = at::tensor({0.5, -0.25}, at::kDouble);
  opt.step(0.1);
  EXPECT_NEAR(p[0].item<double>(), 1.0 * (1 - 0.001) - 0.1 * 0.5 / (0.5 + 1e-8), 1e-12);
  EXPECT_NEAR(p[1].item<double>(), -2.0 * (1 - 0.001) + 0.1 * 0.25 / (0.25 + 1e-8), 1e-12);
  double p0 = p[0].item<double>();
  p.mutable_grad() = at::tensor({0.1, 0.0}, at::kDouble);
  opt.step(0.1);
  const double m = 0.9 * 0.05 + 0.1 * 0.1, v = 0.999 * 0.00025 + 0.001 * 0.01;
  const double expected = p0 * (1 - 0.001) - 0.1 / (1 - 0.81) * m / (std::sqrt(v / (1 - 0.998001)) + 1e-8);
  EXPECT_NEAR(p[0].item<double>(), expected, 1e-12);
}

TEST(TrainOptimizer, ScheduleAndClipping) {
  train::Recipe r;
  r.optimizer.lr = 1e-3;
  r.warmup_steps = 10;
  EXPECT_DOUBLE_EQ(train::scheduled_lr(r, 0, 110), 0);  // transformers starts warmup at 0
  EXPECT_DOUBLE_EQ(train::scheduled_lr(r, 5, 110), 5e-4);
  EXPECT_DOUBLE_EQ(train::scheduled_lr(r, 10, 110), 1e-3);
  EXPECT_NEAR(train::scheduled_lr(r, 60, 110), 5e-4, 1e-15);  // cosine half way
  r.lr_scheduler = "linear";
  EXPECT_NEAR(train::scheduled_lr(r, 85, 110), 2.5e-4, 1e-15);
  r.lr_scheduler = "constant";
  EXPECT_DOUBLE_EQ(train::scheduled_lr(r, 100, 110), 1e-3);

  auto a = at::zeros({2}, at::kDouble).requires_grad_(true), b = at::zeros({1}, at::kDouble).requires_grad_(true);
  a.mutable_grad() = at::tensor({3.0, 0.0}, at::kDouble);
  b.mutable_grad() = at::tensor({4.0}, at::kDouble);
  EXPECT_DOUBLE_EQ(train::clip_grad_norm({a, b}, 1.0), 5.0);
  EXPECT_NEAR(a.grad()[0].item<double>(), 0.6, 1e-6);
  EXPECT_NEAR(b.grad()[0].item<double>(), 0.8, 1e-6);
}

// Loss masks: prompt tokens, user turns and padding are never trained; completions, assistant
// turns and EOS are.
TEST(TrainData, FormatsTrainOnlyWhatTheyShould) {
  test::TempDir dir;
  auto tok = tokenizer::Tokenizer::load(test::model_dir("base"));
  write_file(dir, "pc.jsonl", R"({"prompt": "Package: vim\nDescription:", "completion": " Vi IMproved"})" "\n");
  write_file(dir, "chat.jsonl",
             R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]})" "\n");
  const std::string base = "base_model: " + test::model_dir("base").string() + "\noutput_dir: x\nmax_steps: 1\n"
                           "shuffle: false\nsequence_len: 64\n";
  write_file(dir, "pc.yaml", base + "datasets: [{path: " + (dir / "pc.jsonl").string() + ", type: prompt_completion}]\n");
  write_file(dir, "chat.yaml", base + "chat_template: chatml\ndatasets: [{path: " + (dir / "chat.jsonl").string() + ", type: chat}]\n");
  train::SpecialTokens special{1, 4};

  train::TrainingData pc(train::load_recipe(dir / "pc.yaml"), tok, special);
  ASSERT_EQ(pc.epoch_size(), 1);
  auto e = pc.draw(0);
  auto prompt = tok.encode("Package: vim\nDescription:", true), completion = tok.encode(" Vi IMproved");
  ASSERT_EQ(e.ids.size(), prompt.size() + completion.size() + 1);
  for (size_t t = 0; t < e.ids.size(); ++t) EXPECT_EQ(e.trained[t], t >= prompt.size()) << t;
  EXPECT_EQ(e.ids.back(), 1);

  train::TrainingData chat(train::load_recipe(dir / "chat.yaml"), tok, special);
  auto c = chat.draw(0);
  std::string trained_text, all_text;
  std::vector<int32_t> trained_ids;
  for (size_t t = 0; t < c.ids.size(); ++t)
    if (c.trained[t]) trained_ids.push_back(c.ids[t]);
  EXPECT_EQ(tok.decode(trained_ids, false), "hello there<|im_end|>");
  EXPECT_EQ(tok.decode(c.ids, false), "<|begin_of_text|><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello there<|im_end|>\n");

  auto b = train::make_batch({e, c}, 4, at::kCPU);
  EXPECT_EQ(b.ids.size(1), static_cast<int64_t>(std::max(e.ids.size(), c.ids.size())));
  EXPECT_EQ((b.labels != -100).sum().item<int64_t>(), static_cast<int64_t>(completion.size() + 1 + trained_ids.size()));
}

// chat_template: model (the default): the base model's own template renders the conversation
// and the loss covers exactly each assistant turn's content and end-of-turn token, on ChatML
// (base's template), Llama-3's and Gemma-3's templates with their real tokenizers. The expected
// masks are written out by hand from the templates.
TEST(TrainData, ChatUsesTheModelsTemplateAndTrainsOnlyAssistantTurns) {
  const auto cases = nlohmann::json::parse(test::read_bytes(test::shared_dir() / "refs" / "chat_template_cases.json"));
  auto fixture_template = [&](const std::string& name) {
    for (const auto& t : cases["templates"])
      if (t["name"] == name) return t;
    throw std::runtime_error("no template " + name);
  };
  const nlohmann::json messages = nlohmann::json::array({{{"role", "user"}, {"content", "hi"}},
                                                         {{"role", "assistant"}, {"content", "hello there"}},
                                                         {{"role", "user"}, {"content", "and you?"}},
                                                         {{"role", "assistant"}, {"content", "fine, thanks"}}});
  struct Case {
    std::string name, tokenizer, full, trained;
  };
  const std::vector<Case> expected{
      {"chatml", "", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello there<|im_end|>\n<|im_start|>user\nand you?<|im_end|>\n<|im_start|>assistant\nfine, thanks<|im_end|>\n",
       "hello there<|im_end|>fine, thanks<|im_end|>"},
      {"llama-3", "llama-3", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nhello there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nand you?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nfine, thanks<|eot_id|>"
       // This template always ends with a generation prompt, whatever add_generation_prompt says.
       "<|start_header_id|>assistant<|end_header_id|>\n\n",
       "hello there<|eot_id|>fine, thanks<|eot_id|>"},
      {"gemma-3", "gemma-3", "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\nhello there<end_of_turn>\n<start_of_turn>user\nand you?<end_of_turn>\n<start_of_turn>model\nfine, thanks<end_of_turn>\n",
       "hello there<end_of_turn>fine, thanks<end_of_turn>"},
  };
  for (const auto& c : expected) {
    SCOPED_TRACE(c.name);
    test::TempDir dir;
    std::filesystem::path model = test::model_dir("base");
    if (!c.tokenizer.empty()) {
      // A model directory with the real tokenizer and the fixture's template (config.json only
      // for the recipe's check; the data never loads the weights).
      model = dir / "model";
      std::filesystem::create_directories(model);
      const auto t = fixture_template(c.name);
      std::filesystem::copy_file(test::shared_dir() / "tokenizers" / c.tokenizer / "tokenizer.json", model / "tokenizer.json");
      test::write_bytes(model / "tokenizer_config.json",
                 nlohmann::json{{"chat_template", t["template"]}, {"bos_token", t["bos_token"]}, {"eos_token", t["eos_token"]}}.dump());
      std::filesystem::copy_file(test::model_dir("base") / "config.json", model / "config.json");
    }
    const auto tok = tokenizer::Tokenizer::load(model);
    write_file(dir, "chat.jsonl", nlohmann::json{{"messages", messages}}.dump() + "\n");
    write_file(dir, "r.yaml", "base_model: " + model.string() + "\noutput_dir: x\nmax_steps: 1\nshuffle: false\n"
                              "sequence_len: 256\ndatasets: [{path: " + (dir / "chat.jsonl").string() + ", type: chat}]\n");
    train::TrainingData data(train::load_recipe(dir / "r.yaml"), tok, {-1, 0});
    const auto e = data.draw(0);
    EXPECT_EQ(tok.decode(e.ids, false), c.full);
    EXPECT_EQ(e.ids, tok.encode(c.full, false));
    std::vector<int32_t> trained, context;
    for (size_t t = 0; t < e.ids.size(); ++t) (e.trained[t] ? trained : context).push_back(e.ids[t]);
    EXPECT_EQ(tok.decode(trained, false), c.trained);
    // Every trained token is an assistant turn's, contiguous per turn: two runs.
    int runs = 0;
    for (size_t t = 0; t < e.trained.size(); ++t) runs += e.trained[t] && (t == 0 || !e.trained[t - 1]);
    EXPECT_EQ(runs, 2);
  }
}

TEST(TrainData, PackingFillsWholeRows) {
  test::TempDir dir;
  auto tok = tokenizer::Tokenizer::load(test::model_dir("base"));
  std::string lines;
  for (int i = 0; i < 40; ++i) lines += R"({"text": "Package: libfoo)" + std::to_string(i) + R"( - a library for foo"})" "\n";
  write_file(dir, "t.jsonl", lines);
  write_file(dir, "r.yaml", "base_model: " + test::model_dir("base").string() + "\noutput_dir: x\nmax_steps: 1\n"
                            "sample_packing: true\nshuffle: false\nsequence_len: 32\ndatasets: [{path: " + (dir / "t.jsonl").string() +
                            ", type: text}]\n");
  train::TrainingData data(train::load_recipe(dir / "r.yaml"), tok, {1, 4});
  int64_t total = 0;
  for (int64_t i = 0; i < data.epoch_size(); ++i) {
    auto e = data.draw(i);
    total += static_cast<int64_t>(e.ids.size());
    if (i + 1 < data.epoch_size()) {
      EXPECT_EQ(e.ids.size(), 32u);
    }
  }
  EXPECT_EQ(total, data.training_tokens());
  EXPECT_GT(data.epoch_size(), 5);
}

TEST(TrainRecipe, BadRecipesFailBeforeTraining) {
  test::TempDir dir;
  auto expect_error = [&](const std::string& yaml, const std::string& needle) {
    write_file(dir, "r.yaml", yaml);
    try {
      train::load_recipe(dir / "r.yaml");
      ADD_FAILURE() << "accepted: " << yaml;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("r.yaml"), std::string::npos) << e.what();
    }
  };
  const std::string ok = small_recipe(dir, "max_steps: 1\n");
  EXPECT_NO_THROW(train::load_recipe(write_file(dir, "good.yaml", ok)));
  expect_error(ok + "learning_rate: 1\n", "unsupported key 'learning_rate'");
  expect_error(ok + "micro_batch_size_typo: 1\n", "unsupported key");
  expect_error(small_recipe(dir, "max_steps: lots\n"), "'max_steps' must be an integer");
  expect_error(small_recipe(dir, "max_steps: 1\nnum_epochs: 2\n"), "exactly one of");
  expect_error(small_recipe(dir, "max_steps: 1\nlr_scheduler: wavy\n"), "must be one of");
  expect_error(small_recipe(dir, "max_steps: 1\n").replace(ok.find("fortune.train"), 13, "missing.train"),
               "not found");
  write_file(dir, "empty.jsonl", R"({"prompt": "a", "completion": ""})" "\n");
  write_file(dir, "e.yaml", "base_model: " + test::model_dir("base").string() +
                                "\noutput_dir: x\nmax_steps: 1\ndatasets: [{path: " + (dir / "empty.jsonl").string() +
                                ", type: prompt_completion}]\n");
  auto tok = tokenizer::Tokenizer::load(test::model_dir("base"));
  try {
    train::TrainingData data(train::load_recipe(dir / "e.yaml"), tok, {-1, 4});
    ADD_FAILURE() << "an example with nothing to learn was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no usable example"), std::string::npos) << e.what();
  }
  write_file(dir, "broken.jsonl", R"({"text": "fine"})" "\n" R"({"text": unterminated)" "\n");
  write_file(dir, "b.yaml", "base_model: " + test::model_dir("base").string() +
                                "\noutput_dir: x\nmax_steps: 1\ndatasets: [{path: " + (dir / "broken.jsonl").string() +
                                ", type: text}]\n");
  try {
    train::TrainingData data(train::load_recipe(dir / "b.yaml"), tok, {-1, 4});
    ADD_FAILURE() << "a broken JSONL line was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("broken.jsonl:2"), std::string::npos) << e.what();
  }
  // --set overrides reach nested keys and are validated like the file.
  auto r = train::load_recipe(dir / "good.yaml", {"lora.r=4", "max_steps=3"});
  EXPECT_EQ(r.lora.r, 4);
  EXPECT_EQ(r.max_steps, 3);
  EXPECT_THROW(train::load_recipe(dir / "good.yaml", {"lora.rank=4"}), Error);
}

// The adapter has PEFT's layout: the same tensor names and shapes as lora-random, which PEFT
// itself wrote for base with r 8 on the same seven modules.
TEST(TrainLora, AdapterHasPeftsLayout) {
  auto m = model::Transformer::load(test::model_dir("base"));
  train::LoraSpec spec;
  spec.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  train::LoraParameters lora(*m, spec, 1, at::kCPU);
  test::TempDir dir;
  lora.save(dir.path(), "base");
  io::Checkpoint ours(dir / "adapter_model.safetensors");
  io::Checkpoint peft(test::model_dir("lora-random") / "adapter_model.safetensors");
  ASSERT_EQ(ours.names().size(), peft.names().size());
  for (const auto& name : peft.names()) {
    ASSERT_TRUE(ours.contains(name)) << name;
    EXPECT_EQ(ours.get(name).spec.shape, peft.get(name).spec.shape) << name;
  }
  auto cfg = nlohmann::json::parse(io::read_text_file(dir / "adapter_config.json"));
  auto ref = nlohmann::json::parse(io::read_text_file(test::model_dir("lora-random") / "adapter_config.json"));
  for (const char* key : {"peft_type", "task_type", "r", "bias", "fan_in_fan_out", "use_rslora", "use_dora"})
    EXPECT_EQ(cfg[key], ref[key]) << key;
  auto sorted = [](nlohmann::json a) {
    auto v = a.get<std::vector<std::string>>();
    std::sort(v.begin(), v.end());
    return v;
  };
  EXPECT_EQ(sorted(cfg["target_modules"]), sorted(ref["target_modules"]));
  // PEFT's init: A uniform within 1/sqrt(in), B zero.
  auto A = lora.tensors()[0], B = lora.tensors()[1];
  EXPECT_LE(A.abs().max().item<double>(), 1 / std::sqrt(256.0));
  EXPECT_GT(A.abs().max().item<double>(), 0.9 / std::sqrt(256.0));
  EXPECT_EQ(B.abs().max().item<double>(), 0);
}

// A short run on fortunes lowers the validation loss clearly, and the adapter it saves, loaded
// the way `anvil eval --adapter` loads it (merged into the weights), gives the trained model's logits.
TEST(TrainRun, ShortRunLearnsAndTheAdapterReloads) {
  test::TempDir dir;
  train::Trainer trainer(train::load_recipe(write_file(dir, "r.yaml", small_recipe(dir, "max_steps: 12\n"))));
  auto outcome = trainer.run();
  ASSERT_TRUE(outcome.initial_val_loss && outcome.final_val_loss);
  std::printf("  val loss %.3f -> %.3f in 12 steps\n", *outcome.initial_val_loss, *outcome.final_val_loss);
  EXPECT_LT(*outcome.final_val_loss, *outcome.initial_val_loss - 0.4);
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors", "log.jsonl", "loss.svg",
                        "checkpoint-12/optimizer.safetensors", "checkpoint-12/trainer_state.json"})
    EXPECT_TRUE(fs::exists(dir / "out" / f)) << f;
  std::ifstream log(dir / "out" / "log.jsonl");
  int lines = 0;
  for (std::string line; std::getline(log, line); ++lines) {
    auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["step"].get<int>(), lines + 1);
    EXPECT_TRUE(j.contains("loss") && j.contains("lr") && j.contains("grad_norm") && j.contains("tokens_per_second"));
  }
  EXPECT_EQ(lines, 12);

  auto adapter = model::LoraAdapter::load(dir / "out");
  auto reloaded = model::Transformer::load(test::model_dir("base"), {}, adapter.get());
  trainer.model().set_training(false);
  at::NoGradGuard no_grad;
  auto ids = at::randint(0, 4096, {2, 32}, at::kLong);
  double diff = test::max_abs_diff(trainer.model().forward(ids), reloaded->forward(ids));
  std::printf("  trained (unmerged) vs reloaded (merged): max |logit diff| %.3g\n", diff);
  EXPECT_LT(diff, 1e-4);
  auto plain = model::Transformer::load(test::model_dir("base"));
  EXPECT_GT(test::max_abs_diff(plain->forward(ids), reloaded->forward(ids)), 1e-2);
}

// A CPU trainer runs LibTorch operators single-threaded (its shards are the parallelism) only while
// it lives: a program that trains and then evaluates gets its thread settings back.
TEST(TrainRun, ThreadSettingsLastAsLongAsTheTrainer) {
  test::TempDir dir;
  const int before = at::get_num_threads();
  at::set_num_threads(2);
  {
    train::Trainer trainer(train::load_recipe(write_file(dir, "r.yaml", small_recipe(dir, "max_steps: 1\n"))));
    EXPECT_EQ(at::get_num_threads(), 1);
  }
  EXPECT_EQ(at::get_num_threads(), 2);
  at::set_num_threads(before);
}

// Stopped after step 3 (as Ctrl-C does) and resumed, the run repeats the uninterrupted one's
// losses bit for bit, dropout included.
TEST(TrainRun, ResumeContinuesTheExactLossSequence) {
  test::TempDir full_dir, split_dir;
  const std::string extra = "max_steps: 6\n";
  const std::vector<std::string> lora = {"lora.r=4", "lora.dropout=0.1"};  // dropout on
  auto full = train::Trainer(train::load_recipe(write_file(full_dir, "r.yaml", small_recipe(full_dir, extra)), lora)).run();
  ASSERT_EQ(full.log.size(), 6u);

  train::TrainHooks stop_after_3;
  int steps = 0;
  stop_after_3.on_step = [&](const train::LogEntry&, int64_t) { ++steps; };
  stop_after_3.stop_requested = [&] { return steps >= 3; };
  auto recipe = train::load_recipe(write_file(split_dir, "r.yaml", small_recipe(split_dir, extra)), lora);
  auto first = train::Trainer(recipe, stop_after_3).run();
  EXPECT_TRUE(first.interrupted);
  EXPECT_EQ(first.steps_done, 3);
  EXPECT_FALSE(fs::exists(split_dir / "out" / "adapter_model.safetensors"));  // only the checkpoint

  train::Trainer resumed(recipe);
  EXPECT_THROW(resumed.resume_from(full_dir.path()), Error);  // no checkpoint-N there: refused
  resumed.resume_from(split_dir / "out");
  auto second = resumed.run();
  ASSERT_EQ(second.log.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(second.log[i].loss, full.log[i].loss) << "step " << i + 1;
  EXPECT_EQ(*second.final_val_loss, *full.final_val_loss);
}

// Evaluation-driven runs, with transformers' rules written out over the run's own log: the run
// stops once `early_stopping_patience` evaluations in a row fail to beat the best by more than
// the threshold; with load_best_model_at_end the adapter written is the best step's, bit for bit
// what a run of the same recipe ended at that step writes; save_total_limit keeps the newest N.
TEST(TrainRun, EarlyStoppingKeepsTheBestAdapter) {
  test::TempDir dir, short_dir;
  // A constant, too-high learning rate makes the validation loss rise and fall.
  const std::string extra =
      "max_steps: 12\neval_steps: 1\nsave_steps: 1\nsave_total_limit: 2\nlr_scheduler: constant\n"
      "early_stopping_patience: 2\nearly_stopping_threshold: 0.01\nload_best_model_at_end: true\n";
  auto recipe = train::load_recipe(write_file(dir, "r.yaml", small_recipe(dir, extra)), {"optimizer.lr=0.03"});
  auto outcome = train::Trainer(recipe).run();

  // The rule by hand over the logged validation losses.
  double best = INFINITY;
  int64_t best_step = 0, since = 0, expected_stop = 12;
  for (const auto& e : outcome.log) {
    ASSERT_TRUE(e.val_loss) << "step " << e.step;
    if (*e.val_loss < best && best - *e.val_loss > 0.01) best = *e.val_loss, best_step = e.step, since = 0;
    else if (++since >= 2 && e.step < 12) {
      expected_stop = e.step;
      break;
    }
  }
  std::printf("  stopped at step %lld (best %lld, val %.4f)\n", static_cast<long long>(outcome.steps_done),
              static_cast<long long>(best_step), best);
  EXPECT_EQ(outcome.steps_done, expected_stop);
  EXPECT_EQ(outcome.early_stopped, expected_stop < 12);
  EXPECT_EQ(outcome.best_step, best_step);
  EXPECT_EQ(static_cast<int64_t>(outcome.log.size()), expected_stop);

  std::vector<std::string> checkpoints;
  for (const auto& entry : fs::directory_iterator(dir / "out"))
    if (entry.path().filename().string().rfind("checkpoint-", 0) == 0) checkpoints.push_back(entry.path().filename());
  std::sort(checkpoints.begin(), checkpoints.end());
  std::vector<std::string> newest{"checkpoint-" + std::to_string(expected_stop - 1),
                                  "checkpoint-" + std::to_string(expected_stop)};
  std::sort(newest.begin(), newest.end());
  EXPECT_EQ(checkpoints, newest);

  // The same recipe run to the best step alone ends with the adapter written here.
  auto shorter = train::load_recipe(write_file(short_dir, "r.yaml", small_recipe(short_dir, extra)),
                                    {"optimizer.lr=0.03", "max_steps=" + std::to_string(best_step),
                                     "early_stopping_patience=0", "load_best_model_at_end=false"});
  train::Trainer(shorter).run();
  io::Checkpoint written(dir / "out" / "adapter_model.safetensors");
  io::Checkpoint reference(short_dir / "out" / "adapter_model.safetensors");
  for (const auto& name : reference.names()) {
    const auto &a = written.get(name).bytes, &b = reference.get(name).bytes;
    ASSERT_TRUE(a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin())) << name;
  }
  EXPECT_TRUE(fs::exists(dir / "out" / newest.back() / "best_adapter_model.safetensors"));
}

// Stopping rules need validation data and evaluations to count.
TEST(TrainRecipe, EvaluationDrivenKeysNeedValidation) {
  test::TempDir dir;
  auto recipe = write_file(dir, "r.yaml", small_recipe(dir, "max_steps: 2\n"));
  EXPECT_THROW(train::load_recipe(recipe, {"early_stopping_patience=2"}), Error);  // eval_steps 0
  EXPECT_THROW(train::load_recipe(recipe, {"val_dataset=null", "load_best_model_at_end=true"}), Error);
  EXPECT_THROW(train::load_recipe(recipe, {"save_total_limit=-1"}), Error);
  EXPECT_NO_THROW(train::load_recipe(recipe, {"early_stopping_patience=2", "eval_steps=1"}));
}

// LoRA+: the first AdamW step moves each element by lr * g / (|g| + eps) (Adam's bias-corrected
// first step), so lora_B moves loraplus_lr_ratio times as far as without it; A, whose gradient is
// zero while B is zero, does not move at all.
TEST(TrainRun, LoraPlusScalesOnlyTheBLearningRate) {
  std::vector<std::vector<at::Tensor>> after;
  for (const char* ratio : {"0", "16"}) {
    test::TempDir dir;
    train::Trainer trainer(train::load_recipe(write_file(dir, "r.yaml", small_recipe(dir, "max_steps: 1\n")),
                                              {"warmup_steps=0", std::string("loraplus_lr_ratio=") + ratio}));
    trainer.run();
    io::Checkpoint adapter(dir / "out" / "adapter_model.safetensors");
    std::vector<at::Tensor> t;
    for (const char* n : {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
                          "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"})
      t.push_back(model::load_tensor(adapter.get(n), at::kDouble));
    after.push_back(t);
  }
  for (size_t i = 0; i < after[0].size(); ++i) {
    auto moved = after[0][i].abs() > 1e-5;  // |g| >> eps there
    ASSERT_GT(moved.sum().item<int64_t>(), 100);
    auto ratio = after[1][i].masked_select(moved) / after[0][i].masked_select(moved);
    EXPECT_NEAR(ratio.min().item<double>(), 16, 16 * 2e-3) << i;
    EXPECT_NEAR(ratio.max().item<double>(), 16, 16 * 2e-3) << i;
  }
}

// NEFTune's noise as transformers draws it: uniform in +-alpha / sqrt(seq * hidden), centred, with
// the uniform distribution's variance; only in training mode.
TEST(TrainLora, NeftuneNoiseHasTheStatedMagnitude) {
  model::DropoutRandomness rng(at::make_generator<at::CPUGeneratorImpl>(4));
  auto x = at::zeros({4, 64, 256});
  const double bound = 5.0 / std::sqrt(64.0 * 256.0);
  auto noise = model::neftune_noise(x, 5.0);
  EXPECT_LE(noise.abs().max().item<double>(), bound);
  EXPECT_GT(noise.abs().max().item<double>(), 0.999 * bound);
  EXPECT_NEAR(noise.mean().item<double>(), 0, 4 * bound / std::sqrt(3.0 * noise.numel()));
  EXPECT_NEAR(noise.var().item<double>(), bound * bound / 3, 0.02 * bound * bound / 3);

  auto m = model::Transformer::load(test::model_dir("tiny-llama"));
  auto ids = at::randint(0, m->config().vocab_size, {1, 8}, at::kLong);
  at::NoGradGuard no_grad;
  auto clean = m->forward(ids);
  m->set_embedding_noise(5.0);
  EXPECT_EQ(test::max_abs_diff(clean, m->forward(ids)), 0);  // not training
  m->set_training(true);
  EXPECT_GT(test::max_abs_diff(clean, m->forward(ids)), 1e-4);
}
