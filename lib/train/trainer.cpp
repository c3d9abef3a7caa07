#include "train/trainer.h"

#include <ATen/core/grad_mode.h>  // at::NoGradGuard (not reached through ATen.h in LibTorch 2.x)
#include <ATen/Parallel.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/version.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <mutex>
#include <thread>

#include "io/atomic_file.h"
#include "model/dropout.h"
#include "model/transformer.h"
#include "tokenizer/tokenizer.h"
#include "util/simd_level.h"
#include "train/adamw.h"
#include "train/dataset.h"
#include "train/lora_parameters.h"
#include "train/loss_curve.h"
#include "util/blas_info.h"
#include "util/error.h"
#include "util/json_reader.h"

namespace anvil::train {
namespace fs = std::filesystem;
namespace {

// bf16 autocast on the training device for the guard's lifetime.
class AutocastGuard {
 public:
  AutocastGuard(bool on, at::Device device) : on_(on), cuda_(device.is_cuda()) { set(on_); }
  ~AutocastGuard() { set(false); }

 private:
  void set(bool enabled) {
    if (!on_) return;
#if TORCH_VERSION_MAJOR >= 2 && TORCH_VERSION_MINOR >= 4 || TORCH_VERSION_MAJOR >= 3
    const auto type = cuda_ ? at::kCUDA : at::kCPU;
    at::autocast::set_autocast_dtype(type, at::kBFloat16);
    at::autocast::set_autocast_enabled(type, enabled);
#else
    if (cuda_) {
      at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
      at::autocast::set_enabled(enabled);
    } else {
      at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
      at::autocast::set_cpu_enabled(enabled);
    }
#endif
    if (!enabled) at::autocast::clear_cache();
  }
  bool on_, cuda_;
};

nlohmann::json to_json(const LogEntry& e) {
  nlohmann::json j{{"step", e.step},
                   {"loss", e.loss},
                   {"lr", e.lr},
                   {"grad_norm", e.grad_norm},
                   {"tokens_per_second", e.tokens_per_second},
                   {"elapsed_seconds", e.elapsed_seconds}};
  if (e.val_loss) {
    j["val_loss"] = *e.val_loss;
    j["val_perplexity"] = std::exp(*e.val_loss);
  }
  return j;
}

LogEntry from_json(const nlohmann::json& j, const std::string& where, size_t index) {
  const util::JsonFields f(j, where, "log[" + std::to_string(index) + "].");
  LogEntry e;
  e.step = f.integer("step", 0, INT64_MAX);
  auto number = [&](const char* key) {
    if (!f.has(key)) f.error(key, "is missing");
    return f.number_or(key, 0, -1e300, 1e300);
  };
  e.loss = number("loss");
  e.lr = number("lr");
  e.grad_norm = number("grad_norm");
  e.tokens_per_second = number("tokens_per_second");
  e.elapsed_seconds = f.number_or("elapsed_seconds", 0.0, 0, 1e300);
  if (f.has("val_loss")) e.val_loss = number("val_loss");
  return e;
}

at::Device pick_device(const std::string& name) {
  if (name == "cpu") return at::kCPU;
  if (name == "cuda" && !at::hasCUDA()) fail("train", "device: cuda requested but no CUDA GPU is available");
  return name == "cuda" || at::hasCUDA() ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
}

fs::path latest_checkpoint(const fs::path& path) {
  if (fs::exists(path / "trainer_state.json")) return path;
  fs::path best;
  int64_t best_step = -1;
  if (fs::is_directory(path))
    for (const auto& entry : fs::directory_iterator(path)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind("checkpoint-", 0) != 0 || !fs::exists(entry.path() / "trainer_state.json")) continue;
      try {
        int64_t step = std::stoll(name.substr(11));
        if (step > best_step) best_step = step, best = entry.path();
      } catch (...) {
      }
    }
  if (best.empty()) fail(path.string(), "is neither a checkpoint directory nor holds checkpoint-N directories");
  return best;
}

}  // namespace

// The thread settings a CPU trainer needs (LibTorch operators single-threaded, each shard's
// worker doing its own; OpenBLAS at `threads`) for as long as the trainer lives: a program that
// trains and then evaluates gets its own settings back.
class CpuThreadSettings {
 public:
  explicit CpuThreadSettings(int threads)
      : saved_intra_op_(at::get_num_threads()), saved_blas_(blas_info().threads.value_or(threads)) {
    at::set_num_threads(1);
    set_blas_threads(threads);
  }
  ~CpuThreadSettings() {
    at::set_num_threads(saved_intra_op_);
    set_blas_threads(saved_blas_);
  }
  CpuThreadSettings(const CpuThreadSettings&) = delete;
  CpuThreadSettings& operator=(const CpuThreadSettings&) = delete;

 private:
  int saved_intra_op_, saved_blas_;
};

struct Trainer::Impl {
  std::optional<CpuThreadSettings> cpu_threads;
  at::Device device = at::kCPU;
  int64_t threads = 1;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  std::unique_ptr<TrainingData> data;
  std::unique_ptr<LoraParameters> lora;
  std::unique_ptr<AdamW> optimizer;
  SpecialTokens special;
  std::ofstream log_file;
  bool bf16 = false;  // precision bf16 where it runs natively (CUDA, or a CPU with bf16 instructions)
  // Evaluations after training steps (rebuilt from the log on resume): the best so far, and how
  // many evaluations since it.
  std::optional<double> best_val;
  int64_t best_step = 0, evaluations_since_best = 0;
  std::vector<at::Tensor> best_tensors;  // load_best_model_at_end: a copy of the best adapter
};

namespace {
const char* const kBestAdapterFile = "best_adapter_model.safetensors";
}

Batch make_batch(const std::vector<Example>& examples, int32_t pad, at::Device device) {
  int64_t L = 0;
  for (const auto& e : examples) L = std::max<int64_t>(L, static_cast<int64_t>(e.ids.size()));
  const int64_t B = static_cast<int64_t>(examples.size());
  Batch batch;
  auto ids = at::full({B, L}, pad, at::kLong), labels = at::full({B, L}, -100, at::kLong);
  auto* pi = ids.data_ptr<int64_t>();
  auto* pl = labels.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    const auto& e = examples[b];
    for (size_t t = 0; t < e.ids.size(); ++t) {
      pi[b * L + static_cast<int64_t>(t)] = e.ids[t];
      if (e.trained[t]) pl[b * L + static_cast<int64_t>(t)] = e.ids[t];
    }
    batch.tokens += static_cast<int64_t>(e.ids.size());
  }
  batch.ids = ids.to(device);
  batch.labels = labels.to(device);
  return batch;
}

at::Tensor causal_lm_loss(const at::Tensor& logits, const at::Tensor& labels, bool sum) {
  const int64_t V = logits.size(-1), T = logits.size(1);
  auto predicted = logits.narrow(1, 0, T - 1).reshape({-1, V});
  if (predicted.scalar_type() != at::kDouble) predicted = predicted.to(at::kFloat);
  auto targets = labels.narrow(1, 1, T - 1).reshape({-1});
  return at::cross_entropy_loss(predicted, targets, {}, sum ? at::Reduction::Sum : at::Reduction::Mean, -100);
}

Trainer::Trainer(Recipe recipe, const TrainHooks& hooks)
    : recipe_(std::move(recipe)), hooks_(hooks), impl_(std::make_unique<Impl>()) {
  auto& I = *impl_;
  I.device = pick_device(recipe_.device);
  if (I.device.is_cpu()) {
    const int threads = recipe_.threads > 0 ? static_cast<int>(recipe_.threads)
                                            : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    I.threads = threads;
    I.cpu_threads.emplace(threads);  // operators stay on their worker; see train_step()
  }
  I.tokenizer = std::make_unique<tokenizer::Tokenizer>(tokenizer::Tokenizer::load(recipe_.base_model));
  model::ModelConfig config = model::ModelConfig::load(recipe_.base_model);
  I.tokenizer->check_fits_model(config.vocab_size, (recipe_.base_model / "config.json").string());
  if (!config.eos_token_ids.empty()) I.special.eos = static_cast<int32_t>(config.eos_token_ids[0]);
  I.special.pad = config.pad_token_id ? static_cast<int32_t>(*config.pad_token_id) : std::max(0, I.special.eos);
  I.data = std::make_unique<TrainingData>(recipe_, *I.tokenizer, I.special);

  const int64_t per_step = recipe_.micro_batch_size * recipe_.gradient_accumulation_steps;
  total_steps_ = recipe_.max_steps > 0
                     ? recipe_.max_steps
                     : static_cast<int64_t>(std::ceil(recipe_.num_epochs * static_cast<double>(I.data->epoch_size()) /
                                                      static_cast<double>(per_step)));
  total_steps_ = std::max<int64_t>(total_steps_, 1);

  // bf16: the frozen weights are stored in bf16 (like a bf16 PEFT base), LoRA and AdamW in fp32.
  // A CPU without bf16 instructions would emulate every bf16 operation (a shipped recipe ran ~30x
  // slower than fp32 on AVX2): there the model computes in fp32 from the weights as stored (a bf16
  // checkpoint stays bf16 in memory, dequantized tile by tile), and the user is told once.
  I.bf16 = recipe_.precision == "bf16" && (I.device.is_cuda() || simd::native_bf16());
  if (recipe_.precision == "bf16" && !I.bf16 && hooks_.info)
    hooks_.info("note: this CPU has no native bf16 (AVX512-BF16/AMX), where LibTorch emulates it ~30x slower; "
                "computing in fp32 instead, the frozen weights kept as stored");
  model::LoadOptions load;
  load.device = I.device;
  load.compute_dtype = I.bf16 ? at::kBFloat16 : at::kFloat;
  model_ = model::Transformer::load(recipe_.base_model, load);
  model_->set_gradient_checkpointing(recipe_.gradient_checkpointing);
  I.lora = std::make_unique<LoraParameters>(*model_, recipe_.lora, recipe_.seed, I.device);
  I.lora->attach(*model_);
  // LoRA+ (Hayou et al.; PEFT's create_loraplus_optimizer): B learns loraplus_lr_ratio times faster.
  std::vector<double> lr_scale;
  for (const auto& name : I.lora->names())
    lr_scale.push_back(recipe_.loraplus_lr_ratio > 0 && name.find(".lora_B.") != std::string::npos
                           ? recipe_.loraplus_lr_ratio
                           : 1.0);
  I.optimizer = std::make_unique<AdamW>(I.lora->tensors(), recipe_.optimizer, lr_scale);
  model_->set_embedding_noise(recipe_.neftune_noise_alpha);
  if (hooks_.info)
    hooks_.info("data: " + I.data->summary() + "; " + std::to_string(total_steps_) + " steps of " +
                std::to_string(per_step) + " examples on " + (I.device.is_cuda() ? "cuda" : "cpu"));
}

Trainer::~Trainer() = default;

int64_t Trainer::trainable_parameters() const { return impl_->lora->count(); }

void Trainer::resume_from(const fs::path& path) {
  const fs::path dir = latest_checkpoint(path);
  const fs::path state_file = dir / "trainer_state.json";
  const std::string where = state_file.string();
  const nlohmann::json state = util::parse_json(io::read_text_file(state_file), where);
  const util::JsonFields f(state, where);
  start_step_ = steps_done_ = f.integer("step", 0, total_steps_);
  log_.clear();
  const nlohmann::json* log = f.find("log");
  if (!log || !log->is_array()) f.error("log", "must be a list");
  for (size_t i = 0; i < log->size(); ++i) log_.push_back(from_json((*log)[i], where, i));
  if (f.has("initial_val_loss")) initial_val_loss_ = f.number_or("initial_val_loss", 0, -1e300, 1e300);
  if (static_cast<uint64_t>(f.integer_or("seed", static_cast<int64_t>(recipe_.seed), 0, INT64_MAX)) != recipe_.seed)
    fail(where, "was written with another seed; resuming would not repeat the run");
  const int64_t optimizer_steps = f.integer_or("optimizer_steps", start_step_, 0, INT64_MAX);
  impl_->lora->load(dir);
  impl_->best_val.reset();
  impl_->best_tensors.clear();
  for (const auto& e : log_)
    if (e.val_loss) note_evaluation(e.step, *e.val_loss);
  if (recipe_.load_best_model_at_end && impl_->best_val) {
    if (!fs::exists(dir / kBestAdapterFile))
      fail(dir.string(), std::string("has no ") + kBestAdapterFile + " (written without load_best_model_at_end)");
    impl_->best_tensors = load_tensors(dir / kBestAdapterFile, impl_->lora->names(), impl_->device);
  }
  std::vector<std::string> names;
  for (const auto& n : impl_->lora->names()) names.insert(names.end(), {n + ".exp_avg", n + ".exp_avg_sq"});
  impl_->optimizer->load_state(load_tensors(dir / "optimizer.safetensors", names, impl_->device),
                               optimizer_steps, (dir / "optimizer.safetensors").string());
  if (hooks_.info) hooks_.info("resuming from " + dir.string() + " at step " + std::to_string(start_step_));
}

double Trainer::validation_loss() {
  auto& I = *impl_;
  const auto& val = I.data->validation();
  if (val.empty()) return NAN;
  at::NoGradGuard no_grad;
  model_->set_training(false);
  AutocastGuard autocast(I.bf16, I.device);
  double nll = 0;
  int64_t count = 0;
  for (size_t i = 0; i < val.size(); i += recipe_.micro_batch_size) {
    std::vector<Example> chunk(val.begin() + i, val.begin() + std::min(val.size(), i + recipe_.micro_batch_size));
    Batch b = make_batch(chunk, I.special.pad, I.device);
    nll += causal_lm_loss(model_->forward(b.ids), b.labels, /*sum=*/true).item<double>();
    count += (b.labels.narrow(1, 1, b.labels.size(1) - 1) != -100).sum().item<int64_t>();
  }
  return nll / static_cast<double>(count);
}

Trainer::StepResult Trainer::train_step(int64_t step) {
  auto& I = *impl_;
  {  // GPU dropout masks: a function of (seed, step)
    auto gen = at::globalContext().defaultGenerator(I.device);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_current_seed(mix64(recipe_.seed ^ mix64(static_cast<uint64_t>(step) + 0x10000)));
  }
  model_->set_training(true);
  const int64_t accum = recipe_.gradient_accumulation_steps, mb = recipe_.micro_batch_size;
  const auto& params = I.lora->tensors();
  std::vector<at::Tensor> grads(params.size());
  double loss_sum = 0;
  int64_t tokens = 0;
  for (int64_t m = 0; m < accum; ++m) {
    std::vector<Example> examples;
    for (int64_t i = 0; i < mb; ++i) examples.push_back(I.data->draw((step * accum + m) * mb + i));
    int64_t labelled = 0;
    for (const auto& e : examples) {
      for (size_t t = 1; t < e.trained.size(); ++t) labelled += e.trained[t];
      tokens += static_cast<int64_t>(e.ids.size());
    }
    // On CPU the micro-batch is split into one shard per thread, each run single-threaded: small
    // GEMMs split across cores lose most of their time to synchronisation. Shards are fixed by
    // position and their gradients summed in order, so the result does not depend on scheduling.
    const int64_t shards = I.device.is_cpu() ? std::min<int64_t>(I.threads, mb) : 1;
    std::vector<std::vector<at::Tensor>> shard_grads(shards);
    std::vector<double> shard_loss(shards);
    auto run_shard = [&](int64_t k) {
      std::vector<Example> part(examples.begin() + k * mb / shards, examples.begin() + (k + 1) * mb / shards);
      std::optional<model::DropoutRandomness> rng;
      if (I.device.is_cpu())
        rng.emplace(at::make_generator<at::CPUGeneratorImpl>(
            mix64(recipe_.seed ^ mix64((static_cast<uint64_t>(step) * 4096 + m) * 4096 + k))));
      Batch b = make_batch(part, I.special.pad, I.device);
      at::Tensor loss;
      {
        AutocastGuard autocast(I.bf16, I.device);
        loss = causal_lm_loss(model_->forward(b.ids), b.labels, /*sum=*/true);
      }
      shard_loss[k] = loss.item<double>();
      at::Tensor scaled = loss / static_cast<double>(labelled * accum);
      shard_grads[k] = torch::autograd::grad({scaled}, params, {}, false, false, /*allow_unused=*/true);
    };
    if (shards > 1) {
      SingleThreadedBlas blas;
      tbb::task_arena arena(static_cast<int>(shards));
      arena.execute([&] {
        tbb::parallel_for(int64_t{0}, shards, [&](int64_t k) {
          at::set_num_threads(1);
          run_shard(k);
        });
      });
    } else {
      run_shard(0);
    }
    at::NoGradGuard no_grad;
    double micro_loss = 0;
    for (int64_t k = 0; k < shards; ++k) {
      micro_loss += shard_loss[k];
      for (size_t i = 0; i < params.size(); ++i) {
        const at::Tensor& g = shard_grads[k][i];
        if (!g.defined()) continue;
        grads[i] = grads[i].defined() ? grads[i].add_(g) : g.clone();
      }
    }
    loss_sum += micro_loss / static_cast<double>(labelled);
  }
  for (size_t i = 0; i < params.size(); ++i) params[i].mutable_grad() = grads[i];
  StepResult result;
  result.grad_norm = clip_grad_norm(params, recipe_.max_grad_norm);
  I.optimizer->step(scheduled_lr(recipe_, step, total_steps_));
  for (const auto& p : params) p.mutable_grad().reset();
  result.loss = loss_sum / static_cast<double>(accum);
  result.tokens = tokens;
  return result;
}

void Trainer::note_evaluation(int64_t step, double val_loss) {
  auto& I = *impl_;
  // transformers' EarlyStoppingCallback: an improvement is a loss lower by more than the threshold.
  if (!I.best_val || (val_loss < *I.best_val && *I.best_val - val_loss > recipe_.early_stopping_threshold)) {
    I.best_val = val_loss;
    I.best_step = step;
    I.evaluations_since_best = 0;
    if (recipe_.load_best_model_at_end) {
      at::NoGradGuard no_grad;
      I.best_tensors.clear();
      for (const auto& t : I.lora->tensors()) I.best_tensors.push_back(t.detach().clone());
    }
  } else {
    ++I.evaluations_since_best;
  }
}

// save_total_limit: the oldest checkpoint-N directories go (the best adapter lives in every
// checkpoint with load_best_model_at_end, so none needs keeping for it).
void Trainer::prune_checkpoints() const {
  if (recipe_.save_total_limit <= 0 || !fs::is_directory(recipe_.output_dir)) return;
  std::vector<std::pair<int64_t, fs::path>> found;
  for (const auto& entry : fs::directory_iterator(recipe_.output_dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("checkpoint-", 0) != 0 || !entry.is_directory()) continue;
    const std::string digits = name.substr(11);
    if (digits.empty() || digits.size() > 18 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    found.emplace_back(std::stoll(digits), entry.path());
  }
  std::sort(found.begin(), found.end());
  for (size_t i = 0; i + static_cast<size_t>(recipe_.save_total_limit) < found.size(); ++i) {
    std::error_code ec;
    fs::remove_all(found[i].second, ec);
  }
}

void Trainer::save_checkpoint(const fs::path& dir) {
  auto& I = *impl_;
  io::AtomicDir out(dir);
  I.lora->save(out.temp_path(), recipe_.base_model.string());
  if (recipe_.load_best_model_at_end && !I.best_tensors.empty())
    save_tensors(out.temp_path() / kBestAdapterFile, I.lora->names(), I.best_tensors);
  std::vector<std::string> names;
  for (const auto& n : I.lora->names()) names.insert(names.end(), {n + ".exp_avg", n + ".exp_avg_sq"});
  save_tensors(out.temp_path() / "optimizer.safetensors", names, I.optimizer->state());
  nlohmann::json state{{"step", steps_done_},
                       {"total_steps", total_steps_},
                       {"optimizer_steps", I.optimizer->steps_taken()},
                       {"seed", recipe_.seed},
                       {"rng", "batches and dropout are derived from seed and step; no generator state is needed"},
                       {"log", nlohmann::json::array()}};
  if (initial_val_loss_) state["initial_val_loss"] = *initial_val_loss_;
  if (I.best_val) state["best"] = {{"step", I.best_step}, {"val_loss", *I.best_val}};
  for (const auto& e : log_) state["log"].push_back(to_json(e));
  io::write_text_file(out.temp_path() / "trainer_state.json", state.dump(1) + "\n");
  out.commit();
}

TrainOutcome Trainer::run() {
  auto& I = *impl_;
  const fs::path out_dir = recipe_.output_dir;
  // The output directory and its log appear only once a step has succeeded: a run that fails
  // on its first step (bad data, a diverging learning rate) leaves nothing behind.
  auto open_output = [&] {
    if (I.log_file.is_open()) return;
    fs::create_directories(out_dir);
    // The log restarts from the checkpoint's entries, so it never holds steps a resume redid.
    {
      std::ofstream rewrite(out_dir / "log.jsonl", std::ios::trunc);
      for (const auto& e : log_) rewrite << to_json(e).dump() << "\n";
    }
    I.log_file.open(out_dir / "log.jsonl", std::ios::app);
    if (!I.log_file) fail((out_dir / "log.jsonl").string(), "cannot be written");
  };
  auto write_curve = [&] {
    CurveSeries train{"train loss", "#1f77b4", {}, false}, val{"val loss", "#d62728", {}, true};
    if (initial_val_loss_) val.points.emplace_back(0, *initial_val_loss_);
    for (const auto& e : log_) {
      train.points.emplace_back(static_cast<double>(e.step), e.loss);
      if (e.val_loss) val.points.emplace_back(static_cast<double>(e.step), *e.val_loss);
    }
    io::write_text_file(out_dir / "loss.svg",
                        loss_curve_svg({train, val}, "LoRA r=" + std::to_string(recipe_.lora.r) + " on " +
                                                         recipe_.base_model.filename().string()));
  };

  TrainOutcome outcome;
  outcome.total_steps = total_steps_;
  const bool has_val = !I.data->validation().empty();
  if (has_val && start_step_ == 0) {
    initial_val_loss_ = validation_loss();
    if (hooks_.info) hooks_.info("step 0: val loss " + std::to_string(*initial_val_loss_));
  }
  auto started = std::chrono::steady_clock::now();
  const double elapsed_before = log_.empty() ? 0 : log_.back().elapsed_seconds;
  int64_t tokens_since = 0;
  auto window_start = started;
  fs::path last_checkpoint;
  for (int64_t step = start_step_; step < total_steps_; ++step) {
    const double lr = scheduled_lr(recipe_, step, total_steps_);
    const StepResult r = train_step(step);
    const double loss = r.loss;
    tokens_since += r.tokens;
    const int64_t done = step + 1;
    const bool last = done == total_steps_;
    if (!std::isfinite(loss)) fail("training", "loss became " + std::to_string(loss) + " at step " + std::to_string(done) +
                                                "; lower the learning rate");
    const bool evaluate = has_val && (last || (recipe_.eval_steps > 0 && done % recipe_.eval_steps == 0));
    open_output();
    auto log_step = [&] {
      auto now = std::chrono::steady_clock::now();
      LogEntry e;
      e.step = done;
      e.loss = loss;
      e.lr = lr;
      e.grad_norm = r.grad_norm;
      e.tokens_per_second = static_cast<double>(tokens_since) / std::chrono::duration<double>(now - window_start).count();
      e.elapsed_seconds = elapsed_before + std::chrono::duration<double>(now - started).count();
      if (evaluate) {
        e.val_loss = validation_loss();
        note_evaluation(done, *e.val_loss);
      }
      log_.push_back(e);
      I.log_file << to_json(e).dump() << "\n";
      I.log_file.flush();
      write_curve();
      if (hooks_.on_step) hooks_.on_step(e, total_steps_);
      tokens_since = 0;
      window_start = std::chrono::steady_clock::now();
    };
    const bool logged = done % recipe_.logging_steps == 0 || last || evaluate;
    if (logged) log_step();
    const bool early_stop = !last && evaluate && recipe_.early_stopping_patience > 0 &&
                            I.evaluations_since_best >= recipe_.early_stopping_patience;
    if (early_stop && hooks_.info)
      hooks_.info("early stopping at step " + std::to_string(done) + ": no improvement in " +
                  std::to_string(I.evaluations_since_best) + " evaluations (best val loss " +
                  std::to_string(*I.best_val) + " at step " + std::to_string(I.best_step) + ")");
    const bool stopping = !last && !early_stop && hooks_.stop_requested && hooks_.stop_requested();
    if (stopping && !logged) log_step();  // the log of a stopped run ends at its checkpoint
    steps_done_ = done;
    if (last || stopping || early_stop || (recipe_.save_steps > 0 && done % recipe_.save_steps == 0)) {
      last_checkpoint = out_dir / ("checkpoint-" + std::to_string(done));
      save_checkpoint(last_checkpoint);
      prune_checkpoints();
    }
    outcome.steps_done = done;
    if (early_stop) {
      outcome.early_stopped = true;
      break;
    }
    if (stopping) {
      outcome.interrupted = true;
      break;
    }
  }
  if (start_step_ == total_steps_) outcome.steps_done = total_steps_;
  open_output();
  if (!outcome.interrupted) {
    // The final adapter at the top of the output directory, where PEFT users look for it.
    if (recipe_.load_best_model_at_end && !I.best_tensors.empty()) {
      I.lora->save(out_dir, recipe_.base_model.string(), I.best_tensors);
      if (hooks_.info)
        hooks_.info("load_best_model_at_end: the adapter written is step " + std::to_string(I.best_step) +
                    "'s (val loss " + std::to_string(*I.best_val) + ")");
    } else {
      I.lora->save(out_dir, recipe_.base_model.string());
    }
    write_curve();
  }
  outcome.checkpoint = last_checkpoint;
  outcome.initial_val_loss = initial_val_loss_;
  for (auto it = log_.rbegin(); it != log_.rend(); ++it)
    if (it->val_loss) {
      outcome.final_val_loss = it->val_loss;
      break;
    }
  outcome.best_val_loss = I.best_val;
  outcome.best_step = I.best_step;
  outcome.log = log_;
  return outcome;
}

}  // namespace anvil::train
