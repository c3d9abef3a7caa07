// anvil moe CONFIG.yaml -o OUT_DIR: dense fine-tunes as the experts of a Mixtral-layout MoE,
// routed by prompts (mergekit-moe's config schema).
#include <ATen/Parallel.h>

#include <cstdio>
#include <memory>

#include "commands.h"
#include "common.h"
#include "merge/moe_merge.h"
#include "progress.h"

namespace anvil::cli {

int run_moe(int argc, char** argv) {
  cxxopts::Options options(argv[0], "Assemble a Mixtral-layout mixture of experts from dense fine-tunes of one base "
                                    "model, as a mergekit-moe config says: attention, norms and embeddings from "
                                    "base_model, each expert's MLPs as its experts, router rows from each expert's "
                                    "prompts (gate_mode hidden, cheap_embed, random, uniform_random).");
  options.positional_help("CONFIG.yaml -o OUT_DIR");
  options.add_options()
      ("config", "MoE config (YAML)", cxxopts::value<std::string>())
      ("o,output", "output model directory (written atomically)", cxxopts::value<std::string>())
      ("seed", "seed for the random gate modes", cxxopts::value<uint64_t>()->default_value("0"))
      ("threads", "CPU threads (default: all cores)", cxxopts::value<int>())
      ("h,help", "show this help");
  options.parse_positional({"config"});
  auto parsed = parse_command(options, argc, argv, {{"config", "CONFIG.yaml"}, {"output", "-o OUT_DIR"}});
  if (!parsed) return 0;
  const cxxopts::ParseResult& args = *parsed;
  at::set_num_threads(thread_count(args));
  const auto config = merge::MoeConfig::load(existing_path(args["config"].as<std::string>(), "MoE config"));
  merge::MoeOptions opts;
  opts.seed = args["seed"].as<uint64_t>();
  std::unique_ptr<Progress> bar;
  std::string stage;
  opts.progress = [&](const std::string& s, int64_t done, int64_t total) {
    if (s != stage) {
      if (bar) bar->finish();
      bar = std::make_unique<Progress>(s == "router" ? "moe: routers" : "moe: write", total, s == "router" ? "experts" : "tensors");
      stage = s;
    }
    bar->update(done);
  };
  const std::filesystem::path out = args["output"].as<std::string>();
  const auto summary = merge::run_moe(config, out, opts);
  if (bar) bar->finish();
  std::printf("%s: %lld experts x %lld layers (top %lld, gate_mode %s), %lld tensors, %.1f MB\n", out.string().c_str(),
              static_cast<long long>(summary.experts), static_cast<long long>(summary.layers),
              static_cast<long long>(config.experts_per_token), config.gate_mode.c_str(),
              static_cast<long long>(summary.tensors), static_cast<double>(summary.bytes_written) / 1e6);
  return 0;
}

}  // namespace anvil::cli
