// anvil bench MODEL: llama-bench's measurements for any model anvil reads. Prompt processing (-p)
// and generation (-n) tokens/s over repetitions (-r), load time, peak RSS, and what computed: the
// weights' storage formats and the dot-kernel instruction set.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>

#include "commands.h"
#include "common.h"
#include "eval/speed_bench.h"
#include "kernel/row_dot.h"
#include "model_options.h"
#include "progress.h"

namespace anvil::cli {
namespace {

std::string gib(uint64_t bytes) {
  char s[32];
  std::snprintf(s, sizeof s, "%.2f GiB", static_cast<double>(bytes) / (1ull << 30));
  return s;
}

std::string rate(const eval::SpeedSample& s) {
  if (s.runs.empty()) return "-";
  char out[48];
  std::snprintf(out, sizeof out, "%.2f ± %.2f", s.mean, s.stddev);
  return out;
}

}  // namespace

int run_bench(int argc, char** argv) {
  cxxopts::Options options(argv[0], "Measure MODEL's prompt-processing and generation speed (tokens/s, mean and "
                                    "spread over repetitions), load time and peak memory, as llama-bench does.");
  options.positional_help("MODEL");
  options.add_options()
      ("model", "model directory or .gguf file", cxxopts::value<std::string>())
      ("p,prompt-tokens", "prompt length (random ids); 0 skips", cxxopts::value<int64_t>()->default_value("512"))
      ("n,gen-tokens", "tokens to generate; 0 skips", cxxopts::value<int64_t>()->default_value("128"))
      ("r,repetitions", "repetitions of each test", cxxopts::value<int>()->default_value("3"))
      ("json", "machine-readable output")
      ("h,help", "show this help");
  add_runtime_options(options);
  options.parse_positional({"model"});
  auto parsed = parse_command(options, argc, argv, {{"model", "MODEL"}});
  if (!parsed) return 0;
  const cxxopts::ParseResult& args = *parsed;
  eval::SpeedOptions speed;
  speed.prompt_tokens = args["prompt-tokens"].as<int64_t>();
  speed.generated_tokens = args["gen-tokens"].as<int64_t>();
  speed.repetitions = args["repetitions"].as<int>();
  if (speed.prompt_tokens < 0 || speed.generated_tokens < 0) throw UsageError("-p and -n must be at least 0");
  if (speed.repetitions < 1) throw UsageError("-r must be at least 1");
  auto model_path = existing_path(args["model"].as<std::string>(), "model directory or .gguf file");
  auto load = apply_runtime_options(args);

  const auto t0 = std::chrono::steady_clock::now();
  auto model = load_model(model_path, load);
  const double load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int64_t tests = (speed.prompt_tokens > 0) + (speed.generated_tokens > 0);
  Progress bar("bench", tests * speed.repetitions, "tests");
  int64_t done = 0;
  speed.progress = [&](const char* phase, int) { bar.update(done++, phase); };
  const auto result = eval::measure_speed(*model, speed);
  bar.finish();
  const uint64_t peak = eval::peak_rss_bytes();
  const auto formats = model->weight_formats();
  uint64_t weight_bytes = 0;
  for (const auto& f : formats) weight_bytes += f.bytes;

  if (args.count("json")) {
    nlohmann::ordered_json j;
    j["model"] = model_path.string();
    j["threads"] = thread_count(args);
    j["load_seconds"] = load_seconds;
    j["peak_rss_bytes"] = peak;
    j["weight_bytes"] = weight_bytes;
    j["dot_kernel"] = std::string(kernel::dot_isa());
    for (const auto& f : formats) j["weights"].push_back({{"format", f.format}, {"matrices", f.matrices}, {"bytes", f.bytes}});
    auto sample = [](const eval::SpeedSample& s) {
      return nlohmann::ordered_json{{"tokens_per_second", s.mean}, {"stddev", s.stddev}, {"runs", s.runs}};
    };
    if (speed.prompt_tokens > 0) j["prompt"] = sample(result.prompt), j["prompt"]["tokens"] = speed.prompt_tokens;
    if (speed.generated_tokens > 0)
      j["generation"] = sample(result.generation), j["generation"]["tokens"] = speed.generated_tokens;
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("model: %s\n", model_path.string().c_str());
  std::string what;
  for (const auto& f : formats) what += (what.empty() ? "" : ", ") + f.format + " x" + std::to_string(f.matrices);
  std::printf("weights: %s (%s), dot kernels: %s, threads: %d\n", what.c_str(), gib(weight_bytes).c_str(),
              std::string(kernel::dot_isa()).c_str(), thread_count(args));
  std::printf("load: %.2f s, peak RSS: %s\n", load_seconds, gib(peak).c_str());
  std::printf("%-8s %8s %18s\n", "test", "tokens", "tokens/s");
  if (speed.prompt_tokens > 0)
    std::printf("%-8s %8lld %18s\n", ("pp" + std::to_string(speed.prompt_tokens)).c_str(),
                static_cast<long long>(speed.prompt_tokens), rate(result.prompt).c_str());
  if (speed.generated_tokens > 0)
    std::printf("%-8s %8lld %18s\n", ("tg" + std::to_string(speed.generated_tokens)).c_str(),
                static_cast<long long>(speed.generated_tokens), rate(result.generation).c_str());
  return 0;
}

}  // namespace anvil::cli
